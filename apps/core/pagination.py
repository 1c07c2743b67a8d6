"""API pagination (kept apart from apps.core.api, which DRF's settings import would loop into)."""

from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500
