from django.urls import path

from . import views

app_name = "tenants"

urlpatterns = [
    path("", views.tenant_list, name="list"),
    path("new/", views.tenant_create, name="create"),
    path("pools/", views.pool_list, name="pools"),
    path("pools/<int:pk>/", views.pool_edit, name="pool-edit"),
    path("<slug:tenant_id>/", views.tenant_detail, name="detail"),
    path("<slug:tenant_id>/edit/", views.tenant_edit, name="edit"),
    path("<slug:tenant_id>/delete/", views.tenant_delete, name="delete"),
    path("<slug:tenant_id>/members/", views.members, name="members"),
    path("<slug:tenant_id>/members/<int:pk>/", views.member_edit, name="member-edit"),
    path("<slug:tenant_id>/departments/", views.departments, name="departments"),
    path("<slug:tenant_id>/departments/<int:pk>/", views.department_edit, name="department-edit"),
    path("<slug:tenant_id>/projects/", views.projects, name="projects"),
    path("<slug:tenant_id>/projects/<int:pk>/", views.project_edit, name="project-edit"),
    path("<slug:tenant_id>/allocations/", views.allocations, name="allocations"),
    path("<slug:tenant_id>/allocations/<int:pk>/release/", views.allocation_release, name="allocation-release"),
]
