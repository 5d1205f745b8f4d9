from django.urls import path

from annotation.datasets import views as dataset_views
from annotation.principles import views as principle_views
from annotation.projects import member_views
from annotation.projects import views as project_views
from annotation.workspace import views as workspace_views

urlpatterns = [
    path("", workspace_views.home, name="home"),
    # ---- annotator workspace
    path("projects/<slug:slug>/work/", workspace_views.work, name="workspace"),
    path(
        "projects/<slug:slug>/guidelines/", workspace_views.guidelines, name="workspace-guidelines"
    ),
    path("projects/<slug:slug>/history/", workspace_views.history, name="workspace-history"),
    path("assignments/<int:pk>/submit/", workspace_views.submit, name="workspace-submit"),
    path(
        "assignments/<int:pk>/demonstrate/",
        workspace_views.demonstrate,
        name="workspace-demonstrate",
    ),
    path("assignments/<int:pk>/skip/", workspace_views.skip, name="workspace-skip"),
    path("judgments/<int:pk>/", workspace_views.judgment_detail, name="workspace-judgment"),
    # ---- imports (admins and managers)
    path("projects/<slug:slug>/import/", dataset_views.import_upload, name="import-upload"),
    path("imports/<int:pk>/", dataset_views.import_job, name="import-job"),
    # ---- datasets in the browser: snapshots and the tasks browser (admins and managers)
    path("projects/<slug:slug>/datasets/", dataset_views.snapshot_list, name="snapshot-list"),
    path(
        "projects/<slug:slug>/datasets/new/",
        dataset_views.snapshot_create,
        name="snapshot-create",
    ),
    path("snapshots/<int:pk>/", dataset_views.snapshot_detail, name="snapshot"),
    path("snapshots/<int:pk>/status/", dataset_views.snapshot_status, name="snapshot-status"),
    path("snapshots/<int:pk>/download/", dataset_views.snapshot_download, name="snapshot-download"),
    path("projects/<slug:slug>/tasks/", dataset_views.task_list, name="staff-tasks"),
    path("tasks/<int:pk>/", dataset_views.task_detail, name="staff-task"),
    path("judgments/<int:pk>/flag/", dataset_views.judgment_flag, name="judgment-flag"),
    # ---- principle sets in the browser (admins and managers; issue 16, part 3)
    path("principles/", principle_views.principle_sets, name="principles"),
    path("principles/new/", principle_views.create_by_rows, name="principle-set-new"),
    path("principles/paste/", principle_views.create_by_paste, name="principle-set-paste"),
    path("principles/<int:pk>/", principle_views.principle_set, name="principle-set"),
    path("principles/<int:pk>/edit/", principle_views.edit, name="principle-set-edit"),
    path("principles/<int:pk>/publish/", principle_views.publish, name="principle-set-publish"),
    path("principles/<int:pk>/fork/", principle_views.fork, name="principle-set-fork"),
    path("principles/<int:pk>/diff/", principle_views.diff, name="principle-set-diff"),
    # ---- projects in the browser: create, settings, archive (issue 16, part 1)
    path("projects/new/", project_views.project_new, name="project-new"),
    path("projects/<slug:slug>/settings/", project_views.project_settings, name="project-settings"),
    path("projects/<slug:slug>/archive/", project_views.project_archive, name="project-archive"),
    path(
        "projects/<slug:slug>/reactivate/",
        project_views.project_reactivate,
        name="project-reactivate",
    ),
    # ---- members and invitation links (issue 16, part 2)
    path("projects/<slug:slug>/members/", member_views.project_members, name="project-members"),
    path(
        "projects/<slug:slug>/members/<int:pk>/",
        member_views.member_update,
        name="project-member-update",
    ),
    path(
        "projects/<slug:slug>/members/<int:pk>/deactivate/",
        member_views.member_deactivate,
        name="project-member-deactivate",
    ),
    path(
        "projects/<slug:slug>/members/<int:pk>/reactivate/",
        member_views.member_reactivate,
        name="project-member-reactivate",
    ),
    path(
        "projects/<slug:slug>/invitations/<int:pk>/revoke/",
        member_views.invitation_revoke,
        name="project-invitation-revoke",
    ),
    path("invitations/<str:token>/", member_views.invitation, name="invitation"),
]
