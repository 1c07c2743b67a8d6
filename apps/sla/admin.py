"""Django admin registrations for SLA policies, reports and credits (read-mostly)."""

from django.contrib import admin

from .models import AlertEvent, SlaCredit, SlaPolicy, SlaReport, SlaViolation


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "tier", "availability_target", "window", "enabled"]
    list_filter = ["tier", "window", "enabled"]


@admin.register(SlaViolation)
class SlaViolationAdmin(admin.ModelAdmin):
    list_display = ["tenant", "metric", "period", "expected", "actual", "severity", "started_at", "resolved_at"]
    list_filter = ["metric", "severity"]


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ["tenant", "rule", "kind", "severity", "created_at"]


@admin.register(SlaReport)
class SlaReportAdmin(admin.ModelAdmin):
    list_display = ["tenant", "period_start", "period_end", "monthly", "status"]


@admin.register(SlaCredit)
class SlaCreditAdmin(admin.ModelAdmin):
    list_display = ["tenant", "policy", "period_start", "period_end", "credit_percent", "actual"]
