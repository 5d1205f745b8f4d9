"""The project's cached judgment counts by source (human, model, imported), and a first
recount of every project, so that no existing project shows "never"."""

from django.db import migrations, models
from django.db.models import Count, F, Q
from django.utils import timezone


def recount(apps, schema_editor):
    Project = apps.get_model("annotation", "Project")
    Task = apps.get_model("annotation", "Task")
    Judgment = apps.get_model("annotation", "Judgment")
    imported = Q(origin__startswith="import:")
    for project in Project.objects.all().iterator():
        tasks = Task.objects.filter(project_id=project.pk)
        judgments = Judgment.objects.filter(task__project_id=project.pk)
        split = judgments.aggregate(total=Count("id"), imported=Count("id", filter=imported))
        by_models = (
            judgments.exclude(imported).filter(annotator__profile__kind="model").count()
        )
        Project.objects.filter(pk=project.pk).update(
            task_count=tasks.count(),
            completed_task_count=tasks.filter(
                submitted_count__gte=F("project__annotations_per_task")
            ).count(),
            judgment_count=split["total"],
            imported_judgment_count=split["imported"],
            model_judgment_count=by_models,
            human_judgment_count=split["total"] - split["imported"] - by_models,
            counts_refreshed_at=timezone.now(),
        )


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0006_importjob_traceback"),
    ]

    operations = [
        migrations.AddField(
            model_name="project",
            name="human_judgment_count",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="project",
            name="imported_judgment_count",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="project",
            name="model_judgment_count",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(recount, migrations.RunPython.noop),
    ]
