// The report page's print button: the browser's print dialog, where "Save as PDF" makes the PDF.
document.getElementById("print-report")?.addEventListener("click", () => window.print());
