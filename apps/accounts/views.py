"""Sign-in and sign-out pages."""

from django.contrib.auth import logout
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from .forms import SignInForm
from .signin import complete_sign_in


def _safe_next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return "/"


@never_cache
@csrf_protect
def signin(request):
    if request.user.is_authenticated:
        return redirect(_safe_next(request))
    form = SignInForm(request, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        complete_sign_in(request, form.user, method="password")
        return redirect(_safe_next(request))
    return render(request, "accounts/signin.html", {"form": form, "next": _safe_next(request)}, status=400 if form.errors else 200)


@require_POST
def signout(request):
    logout(request)
    return redirect("accounts:signin")
