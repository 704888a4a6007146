"""The repositories page (Admins): list, create, edit, delete, make default, test.

Thin views: permission first (global Admins; Operators and Viewers get 403, audited),
then the form, the service, the response. Secrets are never rendered back; a generated
restic password is shown once, in the response to the POST that created it (no session,
no message, no log), with caching forbidden.
"""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles, scoping
from project.errors import CargoholdError
from repositories import selectors, services
from repositories.forms import RepositoryForm
from repositories.models import Repository

PERM = roles.MANAGE_POLICIES  # with require_global: Admins of the whole installation


def _require_admin(request, name: str = "(list)") -> None:
    scoping.require_global(request, PERM, object_type="repository", object_name=name)


def _get(request, name: str) -> Repository:
    _require_admin(request, name)
    return get_object_or_404(Repository, name=name)


def _form_error(form: RepositoryForm, exc: services.RepositoryInvalid) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, str(exc))


@require_GET
def repository_list(request):
    _require_admin(request)
    selectors.repository_default()  # the built-in folder has its row
    return render(request, "repositories/list.html", {"repositories": selectors.repositories_with_counts()})


@never_cache
@require_http_methods(["GET", "POST"])
def repository_create(request):
    _require_admin(request, "(new)")
    form = RepositoryForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            saved = services.repository_create(
                name=data["name"], url=data["url"], format=data["format"], region=data["region"],
                path_style=data["path_style"], access_key_id=data["access_key_id"],
                secret_access_key=data["secret_access_key"], password=data["password"],
                is_default=data["is_default"], verify_read_subset=data["verify_read_subset"],
                user=request.user, request=request)
        except services.RepositoryInvalid as exc:
            _form_error(form, exc)
        else:
            if saved.generated_password:
                return render(request, "repositories/created.html",
                              {"repository": saved.repository, "password": saved.generated_password})
            messages.success(request, f"Added the repository {saved.repository.name}.")
            return redirect("repository_list")
    status = 400 if request.method == "POST" else 200
    return render(request, "repositories/form.html", {"form": form, "repository": None}, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def repository_edit(request, name: str):
    repo = _get(request, name)
    form = RepositoryForm(request.POST or None, instance=repo)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.repository_update(
                repository=repo, url=data["url"], region=data["region"], path_style=data["path_style"],
                access_key_id=data["access_key_id"], secret_access_key=data["secret_access_key"],
                password=data.get("password", ""), verify_read_subset=data.get("verify_read_subset", ""),
                user=request.user, request=request)
        except services.RepositoryInvalid as exc:
            repo.refresh_from_db()
            _form_error(form, exc)
        else:
            messages.success(request, f"Saved the repository {repo.name}.")
            return redirect("repository_list")
    status = 400 if request.method == "POST" else 200
    return render(request, "repositories/form.html", {"form": form, "repository": repo}, status=status)


@require_http_methods(["GET", "POST"])
def repository_delete(request, name: str):
    repo = _get(request, name)
    in_use = services.repository_in_use(repo)
    if request.method == "POST":
        if request.POST.get("confirm", "").strip() != repo.name:
            messages.error(request, f"Type {repo.name} to confirm.")
            return redirect("repository_delete", name=repo.name)
        try:
            services.repository_delete(repository=repo, user=request.user, request=request)
        except CargoholdError as exc:
            messages.error(request, str(exc))
            return redirect("repository_list")
        messages.success(request, f"Deleted the repository {name}; its data was left where it is.")
        return redirect("repository_list")
    return render(request, "repositories/delete.html", {"repository": repo, "in_use": in_use})


@require_POST
def repository_make_default(request, name: str):
    repo = _get(request, name)
    services.repository_make_default(repository=repo, user=request.user, request=request)
    messages.success(request, f"{repo.name} is the default repository now.")
    return redirect("repository_list")


@require_POST
def repository_check(request, name: str):
    repo = _get(request, name)
    job = services.repository_check_start(repository=repo, user=request.user, request=request)
    messages.success(request, f"Testing the connection to {repo.name}: the result shows on this page.")
    return redirect("job_detail", job_id=job.pk)
