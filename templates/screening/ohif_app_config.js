{% autoescape off %}// OHIF's configuration, written by the portal (screening/exchange/ohif.py): its DICOMweb, same origin, with the
// session cookie. What the stock index.html set inline is set here, so the page needs no inline script.
window.PUBLIC_URL = "{{ base|escapejs }}";
window.browserImportFunction = (name) => import(name);
window.config = {
  name: "screening-portal",
  routerBasename: "{{ base|escapejs }}".replace(/\/$/, ""),
  extensions: [],
  modes: [],
  customizationService: {
    // OHIF 3.13 reads every measurement group of a TID 1500 report as a measurement and then takes the image
    // reference of its first coordinate (cornerstone-dicom-sr's _checkIfCanAddMeasurementsToDisplaySet:
    // `measurement.coords[0].ReferencedSOPSequence`). The portal's SRs hold groups with no image region (the
    // exam's, each breast's and each image's probability; the decision and each breast's call): for those the
    // viewer stopped on a TypeError and showed "Something went wrong" instead of the report. Such a group is
    // passed on with one empty coordinate, which OHIF skips as "not on an image", as it does any measurement
    // without an image reference; groups with a region are shown on their image, as before.
    onBeforeSRAddMeasurement: ({ measurement }) =>
      measurement.coords && measurement.coords.length ? measurement : { ...measurement, coords: [{}] },
  },
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: { option: "never" },
  showErrorDetails: "never",
  defaultDataSourceName: "portal",
  dataSources: [
    {
      namespace: "@ohif/extension-default.dataSourcesModule.dicomweb",
      sourceName: "portal",
      configuration: {
        friendlyName: "Screening portal",
        name: "portal",
        wadoUriRoot: "{{ dicomweb|escapejs }}",
        qidoRoot: "{{ dicomweb|escapejs }}",
        wadoRoot: "{{ dicomweb|escapejs }}",
        qidoSupportsIncludeField: true,
        supportsReject: false,
        dicomUploadEnabled: false,
        imageRendering: "wadors",
        thumbnailRendering: "wadors",
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: true,
        supportsWildcard: true,
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true },
      },
    },
  ],
  httpErrorHandler: (error) => console.warn("DICOMweb request failed", error.status),
};
{% endautoescape %}
