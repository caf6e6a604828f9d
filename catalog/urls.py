from django.urls import path

from catalog.apis import CatalogJobDetailApi, CatalogJobListApi, ProductUpsertApi

urlpatterns = [
    path("products", ProductUpsertApi.as_view(), name="catalog-products"),
    path("jobs", CatalogJobListApi.as_view(), name="catalog-jobs"),
    path("jobs/<public_id:job_id>", CatalogJobDetailApi.as_view(), name="catalog-job-detail"),
]
