{% autoescape off %}// OHIF's configuration, written by the portal (screening/exchange/ohif.py): its DICOMweb, same origin, with the
// session cookie. What the stock index.html set inline is set here, so the page needs no inline script.
window.PUBLIC_URL = "{{ base|escapejs }}";
window.browserImportFunction = (name) => import(name);
window.config = {
  name: "screening-portal",
  routerBasename: "{{ base|escapejs }}".replace(/\/$/, ""),
  extensions: [],
  modes: [],
  customizationService: {},
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
