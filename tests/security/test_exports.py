"""Streamed exports (issue 17): any size with flat memory, no 50,000 cap, CSV with a formula
guard (model output is untrusted)."""

import csv
import io
import json
import tracemalloc

import pytest
from django.http import StreamingHttpResponse

from annotation.datasets import bulk
from annotation.datasets.exports.writers import csv_cell, schema_for
from annotation.models import Judgment
from annotation.projects import services as project_services
from annotation.specs import PromptSpec, ResponseSpec

V1 = "/api/v1/"


def judged_in_bulk(project, *, tasks: int, annotators: int, texts=None) -> int:
    """``tasks`` compare tasks, each judged by every one of ``annotators`` (bulk writes);
    ``texts(i)`` gives task i's two responses. Returns the judgment count."""
    users = [
        project_services.create_user(username=f"bulk-{i}", password=None).pk
        for i in range(annotators)
    ]
    texts = texts or (lambda i: (f"Answer A{i}", f"Answer B{i}"))

    def judge(specs, task_ids, response_ids):
        Judgment.objects.bulk_create(
            [
                Judgment(task_id=task_id, annotator_id=user, ordering=[[a], [b]], strength=2)
                for task_id, (a, b) in zip(task_ids, response_ids, strict=True)
                for user in users
            ],
            batch_size=2000,
        )

    bulk.create_tasks(
        project=project,
        specs=(
            PromptSpec(
                messages=[{"role": "user", "content": f"Question {i}?"}],
                responses=[
                    ResponseSpec(text, f"model:{side}@1")
                    for side, text in zip("ab", texts(i), strict=True)
                ],
            )
            for i in range(tasks)
        ),
        on_batch=judge,
    )
    return tasks * annotators


@pytest.fixture
def staff_client(client, make_user):
    client.force_login(make_user("exporter", role="admin"))
    return client


@pytest.mark.django_db
@pytest.mark.timeout(600)
def test_streamed_export_beyond_50000_rows_is_a_generator_with_flat_memory(project, staff_client):
    """Was: 400 "more than 50000 records" (and every read batch of 4,000 judgments held at
    once). Now the response is a generator that reads small batches as it is consumed: every
    row arrives, and the memory Python allocates while streaming stays far below 30 MiB."""
    count = judged_in_bulk(project, tasks=2_551, annotators=20)
    assert count > 50_000
    response = staff_client.get(V1 + f"projects/{project.pk}/export/?kind=preference")
    assert response.status_code == 200, response.content
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "application/x-ndjson"
    chunks = iter(response.streaming_content)
    first = next(chunks)  # the first rows arrive before the rest is read
    assert 0 < first.count(b"\n") < count
    lines = first.count(b"\n")
    tracemalloc.start()
    try:
        for chunk in chunks:
            lines += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == count
    assert peak < 30 * 2**20, f"{peak / 2**20:.1f} MiB traced while streaming"


@pytest.mark.django_db
def test_a_configured_cap_still_refuses_a_larger_stream(project, staff_client, settings):
    judged_in_bulk(project, tasks=6, annotators=1)
    assert settings.EXPORT_STREAM_MAX_JUDGMENTS == 0  # the default: no cap
    settings.EXPORT_STREAM_MAX_JUDGMENTS = 5
    refused = staff_client.get(V1 + f"projects/{project.pk}/export/")
    assert refused.status_code == 400 and "more than 5 records" in refused.json()["detail"]


HOSTILE = ['=HYPERLINK("http://evil","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"]


@pytest.mark.django_db
@pytest.mark.parametrize("style", ["text", "conversational"])
def test_csv_export_parses_with_dictreader_and_guards_formulas(project, staff_client, style):
    """Model output starting like a spreadsheet formula is exported quoted (``'=…``); the
    header is the kind's documented column set; nested values are JSON text."""
    judged_in_bulk(project, tasks=4, annotators=2, texts=lambda i: (HOSTILE[i], f"plain {i}"))
    Judgment.objects.filter(task__project=project).update(rationale="=1+1", discretion_note="@note")
    for kind, style_param in (("raw", style), ("kto", style), ("preference", "text")):
        response = staff_client.get(
            V1 + f"projects/{project.pk}/export/?file_format=csv&kind={kind}&style={style_param}"
            "&prompt_style=implicit"
        )
        assert response.status_code == 200, response.content
        assert isinstance(response, StreamingHttpResponse)
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"].endswith(f'-{kind}.csv"')
        text = b"".join(response.streaming_content).decode()
        reader = csv.DictReader(io.StringIO(text))
        prompt_style = "implicit" if kind == "preference" else "explicit"
        assert reader.fieldnames == schema_for(kind, style_param, prompt_style).names
        rows = list(reader)
        assert rows, kind
        for row in rows:
            for cell in row.values():
                assert not cell.startswith(("=", "+", "-", "@")), (kind, cell)
        if kind == "raw":
            assert len(rows) == 8
            assert {row["rationale"] for row in rows} == {"'=1+1"}
            assert {row["discretion_note"] for row in rows} == {"'@note"}
            texts = {r["text"] for row in rows for r in json.loads(row["responses"])}
            assert set(HOSTILE) <= texts  # nested: JSON text, content unchanged
            assert {row["both_bad"] for row in rows} == {"false"}
            assert {row["confidence"] for row in rows} == {""}
        if kind == "kto" and style == "text":
            completions = {row["completion"] for row in rows}
            assert {" " + value for value in HOSTILE} <= completions  # TRL's leading space
        if kind == "preference":  # implicit text prompt: the transcript starts each cell
            assert all(row["chosen"].startswith("\n\nHuman: Question") for row in rows)


def test_csv_cell_guard_keeps_numbers_and_quotes_formula_text():
    assert [csv_cell(v) for v in ("=A1", "+1", "-1", "@x", "\tx", "\rx")] == [
        "'=A1", "'+1", "'-1", "'@x", "'\tx", "'\rx",
    ]  # fmt: skip
    assert csv_cell(-1) == -1 and csv_cell(-0.5) == -0.5 and csv_cell(True) == "true"
    assert csv_cell(None) == "" and csv_cell("a=b") == "a=b"
    assert csv_cell([{"role": "user", "content": "=x"}]) == '[{"role":"user","content":"=x"}]'


@pytest.mark.django_db
def test_unknown_stream_format_is_a_400(project, staff_client):
    response = staff_client.get(V1 + f"projects/{project.pk}/export/?file_format=xlsx")
    assert response.status_code == 400 and "file_format" in response.json()["detail"]
