"""Console pages: prices (and unpriced models), a tenant's cost allocation and chargeback (tables,
Plotly charts, CSV), budgets, invoices and credit notes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.mixins import apply_form_errors, get_tenant_or_404, save_form
from apps.core.roles import tenant_ids_for, user_can
from apps.tenants.models import Tenant

from . import exports, figures, selectors, services
from .forms import BudgetForm, CreditNoteForm, IssueForm, PriceForm
from .models import Budget, Invoice, InvoiceKind
from .money import add_months, month_start, parse_period, period_label, resolve_range, to_cents


def _errors(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{k}: {' '.join(v)}" if k != "__all__" else " ".join(v)
                         for k, v in exc.message_dict.items())
    return " ".join(exc.messages)



@login_required
def index(request):
    """Billing home: the tenants whose bills this user may see, and the price list."""
    if request.user.is_platform_admin:
        tenants = Tenant.objects.order_by("name")
    else:
        tenants = Tenant.objects.filter(pk__in=tenant_ids_for(request.user, "billing")).order_by("name")
        if len(tenants) == 1:
            return redirect("billing:tenant", tenants[0].pk)
    return render(request, "billing/index.html", {"tenants": tenants})


@login_required
@require_http_methods(["GET", "POST"])
def prices(request):
    """The price list with its history; platform admins add prices and see unpriced models."""
    form = PriceForm(request.POST or None)
    if request.method == "POST" and not request.user.is_platform_admin:
        raise PermissionDenied("Only platform admins set model prices.")
    done = save_form(
        request, form,
        lambda data: services.set_price(
            actor=request.user, request=request, model=data["model"], input_per_1k=data["input_per_1k"],
            output_per_1k=data["output_per_1k"], currency=data["currency"],
            effective_from=data["effective_from"].astimezone(UTC) if data["effective_from"] else None),
        message=lambda price: f"Price of {price.model} set from {price.effective_from:%Y-%m-%d %H:%M} UTC.",
        then=lambda _: redirect("billing:prices"),
    )
    if done:
        return done
    now = datetime.now(UTC)
    current = {p.pk for p in selectors.current_prices(now)}
    rows = [{"price": p, "state": "current" if p.pk in current else ("scheduled" if p.effective_from > now else "past")}
            for p in selectors.prices()]
    unpriced = selectors.unpriced_models(now=now) if request.user.is_platform_admin else []
    initial_model = request.GET.get("model")
    if initial_model and request.method == "GET":
        form = PriceForm(initial={"model": initial_model, "currency": "USD"})
    return render(request, "billing/prices.html", {"rows": rows, "form": form, "unpriced": unpriced,
                                                   "can_edit": request.user.is_platform_admin, "now": now})


@login_required
@require_POST
def price_withdraw(request, pk):
    from apps.gateway.models import ModelPrice

    if not request.user.is_platform_admin:
        raise PermissionDenied("Only platform admins set model prices.")
    price = get_object_or_404(ModelPrice, pk=pk)
    try:
        services.delete_future_price(actor=request.user, price=price, request=request)
        messages.success(request, f"The scheduled price of {price.model} was withdrawn.")
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    return redirect("billing:prices")


def _report_range(request):
    try:
        return resolve_range(period=request.GET.get("period"), start=request.GET.get("start"),
                             end=request.GET.get("end"), now=datetime.now(UTC)), ""
    except ValueError as exc:
        message = exc.args[1] if len(exc.args) == 2 else str(exc)
        start = month_start(datetime.now(UTC))
        return (start, add_months(start, 1)), message


@login_required
def tenant(request, tenant_id):
    """Cost allocation and the chargeback report of one period, as tables and charts (or CSV)."""
    tenant = get_tenant_or_404(request.user, tenant_id, "billing")
    (start, end), range_error = _report_range(request)
    if range_error:
        messages.error(request, range_error)
    if request.GET.get("format") == "csv":
        alloc = selectors.allocation(tenant_id=tenant.pk, start=start, end=end)
        response = HttpResponse(exports.allocation_csv(alloc), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="allocation-{tenant.pk}-{start:%Y%m%d}.csv"'
        return response
    report = selectors.chargeback(tenant_id=tenant.pk, start=start, end=end)
    alloc = report["allocation"]
    this_month = month_start(datetime.now(UTC))
    months = [period_label(add_months(this_month, -i)) for i in range(0, 13)]
    context = {
        "tenant": tenant, "tab": "billing", "report": report, "alloc": alloc, "start": start, "end": end,
        "period": request.GET.get("period") or (period_label(start) if start.day == 1 and add_months(start, 1) == end
                                                else ""),
        "months": months, "figures": json.loads(figures.to_json(figures.allocation_figures(alloc))),
        "dimensions": [("department", "Department"), ("project", "Project"), ("user", "User"), ("model", "Model"),
                       ("api_key", "API key")],
        "can_manage": user_can(request.user, tenant.pk, "manage"), "sub": "costs",
    }
    return render(request, "billing/tenant.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def budgets(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "billing")
    can_manage = user_can(request.user, tenant.pk, "manage")
    form = BudgetForm(request.POST or None, tenant=tenant)
    if request.method == "POST" and not can_manage:
        raise PermissionDenied("Only tenant admins change budgets.")
    done = save_form(
        request, form,
        lambda data: services.save_budget(
            actor=request.user, tenant=tenant, request=request, scope=data["scope"], department=data["department"],
            project=data["project"], amount=data["amount"], currency=data["currency"], period=data["period"],
            hard_limit=data["hard_limit"]),
        message="Budget saved.", then=lambda _: redirect("billing:budgets", tenant.pk),
    )
    if done:
        return done
    now = datetime.now(UTC)
    rows = []
    for budget in selectors.budgets_for(request.user, tenant):
        spent = services.budget_spend(budget=budget, now=now)
        percent = float(spent / budget.amount * 100) if budget.amount else (100.0 if spent else 0.0)
        rows.append({"budget": budget, "spent": to_cents(spent), "percent": percent,
                     "state": "bad" if percent >= 100 else ("warn" if percent >= 80 else "ok")})
    return render(request, "billing/budgets.html", {
        "tenant": tenant, "tab": "billing", "sub": "budgets", "rows": rows, "form": form, "can_manage": can_manage,
        "alerts": selectors.budget_alerts_for(request.user, tenant)[:20]})


@login_required
@require_POST
def budget_delete(request, tenant_id, pk):
    tenant = get_tenant_or_404(request.user, tenant_id, "manage")
    budget = get_object_or_404(Budget.objects.restrict(request.user, "view").filter(tenant=tenant), pk=pk)
    services.delete_budget(actor=request.user, budget=budget, request=request)
    messages.success(request, "Budget deleted.")
    return redirect("billing:budgets", tenant.pk)


@login_required
@require_http_methods(["GET", "POST"])
def invoices(request, tenant_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "billing")
    last_month = period_label(add_months(month_start(datetime.now(UTC)), -1))
    form = IssueForm(request.POST or None, initial={"period": last_month})
    if request.method == "POST":
        if not request.user.is_platform_admin:
            raise PermissionDenied("Only platform admins issue invoices.")
        if form.is_valid():
            try:
                issued = services.issue_invoices(tenant_id=tenant.pk, period_start=parse_period(form.cleaned_data["period"]),
                                                 actor=request.user, request=request)
            except (ValidationError, ValueError) as exc:
                if isinstance(exc, ValidationError):
                    apply_form_errors(form, exc)
                else:
                    form.add_error("period", str(exc))
            else:
                if issued:
                    messages.success(request, "Invoices for the period: " + ", ".join(i.number for i in issued))
                else:
                    messages.info(request, "No priced usage in that period: nothing to invoice.")
                return redirect("billing:invoices", tenant.pk)
    return render(request, "billing/invoices.html", {
        "tenant": tenant, "tab": "billing", "sub": "invoices", "form": form,
        "invoices": selectors.invoices_for(request.user, tenant).select_related("corrects"),
        "can_issue": request.user.is_platform_admin})


@login_required
@require_http_methods(["GET", "POST"])
def invoice_detail(request, tenant_id, pk):
    tenant = get_tenant_or_404(request.user, tenant_id, "billing")
    invoice = get_object_or_404(selectors.invoices_for(request.user, tenant).select_related("corrects"), pk=pk)
    form = CreditNoteForm(request.POST or None)
    if request.method == "POST" and not request.user.is_platform_admin:
        raise PermissionDenied("Only platform admins issue credit notes.")
    done = save_form(
        request, form,
        lambda data: services.issue_credit_note(actor=request.user, invoice=invoice, request=request, **data),
        message=lambda note: f"Credit note {note.number} issued.",
        then=lambda note: redirect("billing:invoice", tenant.pk, note.pk),
    )
    if done:
        return done
    return render(request, "billing/invoice.html", {
        "tenant": tenant, "tab": "billing", "sub": "invoices", "invoice": invoice, "lines": invoice.lines.all(),
        "notes": invoice.credit_notes.all(), "form": form,
        "can_credit": request.user.is_platform_admin and invoice.kind == InvoiceKind.INVOICE})


@login_required
def invoice_download(request, tenant_id, pk, fmt):
    tenant = get_tenant_or_404(request.user, tenant_id, "billing")
    invoice: Invoice = get_object_or_404(selectors.invoices_for(request.user, tenant), pk=pk)
    if fmt == "pdf":
        response = HttpResponse(exports.invoice_pdf(invoice, tenant.name), content_type="application/pdf")
    elif fmt == "csv":
        response = HttpResponse(exports.invoice_csv(invoice), content_type="text/csv; charset=utf-8")
    else:
        from django.http import Http404

        raise Http404("Unknown format.")
    response["Content-Disposition"] = f'attachment; filename="{invoice.number}.{fmt}"'
    return response
