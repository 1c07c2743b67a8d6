"""Django admin: budgets editable; invoices, lines and rollups read-only (issued invoices never change)."""

from django.contrib import admin

from .models import Budget, BudgetAlert, Invoice, InvoiceLine, UsageRollup


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ("tenant", "scope", "department", "project", "amount", "currency", "period", "hard_limit", "enabled")
    list_filter = ("scope", "period", "hard_limit", "enabled")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ("number", "kind", "tenant", "period_start", "currency", "subtotal", "credits", "total", "issued_at")
    list_filter = ("kind", "currency")
    search_fields = ("number", "tenant__id")
    inlines = [InvoiceLineInline]


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyAdmin):
    list_display = ("budget", "tenant", "period_start", "threshold", "spent", "created_at")


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    list_display = ("tenant_id", "day", "model", "department_id", "project_id", "requests", "cost")
    list_filter = ("day",)
