from django.urls import path

from screening.exchange import ohif

urlpatterns = [
    # The OHIF viewer (vendor/ohif, scripts/build_ohif.sh): its page, its routes and its files.
    path("ohif/", ohif.ohif, name="ohif"),
    path("ohif/<path:path>", ohif.ohif, name="ohif-file"),
]
