"""Paths fixed by outside conventions: the OpenAI-compatible API and the Prometheus scrape."""

from django.urls import path

from . import endpoints
from .metrics import metrics_view

urlpatterns = [
    path("v1/chat/completions", endpoints.chat_completions, name="openai-chat-completions"),
    path("v1/models", endpoints.openai_models, name="openai-models"),
    path("metrics", metrics_view, name="metrics"),
]
