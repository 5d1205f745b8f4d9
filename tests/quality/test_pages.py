"""Quality pages: who may see them, what they render, htmx partials and the refresh button."""

import pytest
from django.urls import reverse

from annotation.datasets.importers.judgments import import_judgments
from annotation.models import MetricsReport
from annotation.quality import reports

from .test_analytics import RM_A, _oracle_csv, _rm_csv


@pytest.fixture
def hh_like(labelled_project, write_csv):
    import_judgments(
        project=labelled_project,
        path=_oracle_csv(write_csv),
        fmt="principle-oracle",
        annotator="oracle",
    )
    import_judgments(
        project=labelled_project,
        path=_rm_csv(write_csv, "rm_a", RM_A),
        fmt="reward-model",
        annotator="rm_a",
    )
    return labelled_project


def _urls(slug):
    return [
        reverse("quality:index"),
        reverse("quality:project", args=[slug]),
        reverse("quality:discretion", args=[slug]),
        reverse("quality:annotator", args=[slug, "rm_a"]),
    ]


@pytest.mark.parametrize("role", ["admin", "manager"])
def test_staff_can_see_every_page(client, make_user, hh_like, role):
    client.force_login(make_user(f"{role}-x", role=role))
    for url in _urls(hh_like.slug):
        assert client.get(url).status_code == 200, url
    response = client.post(reverse("quality:refresh", args=[hh_like.slug]))
    assert response.status_code == 302


def test_annotators_are_refused(client, make_user, hh_like):
    client.force_login(make_user("annotator-x", role="annotator"))
    for url in _urls(hh_like.slug):
        assert client.get(url).status_code == 403, url
    assert client.post(reverse("quality:refresh", args=[hh_like.slug])).status_code == 403
    assert not MetricsReport.objects.exists()


def test_viewer_members_read_and_non_members_meet_404(client, make_user, hh_like):
    """A viewer member reads the project's pages (not the all-projects index, no refresh);
    without membership the project is a 404."""
    from annotation.models import ProjectMembership

    viewer = make_user("viewer-x", role="viewer")
    client.force_login(viewer)
    index, *pages = _urls(hh_like.slug)
    refresh = reverse("quality:refresh", args=[hh_like.slug])
    assert client.get(index).status_code == 403
    for url in pages:
        assert client.get(url).status_code == 200, url
    assert client.post(refresh).status_code == 403
    ProjectMembership.objects.filter(user=viewer).delete()
    for url in pages:
        assert client.get(url).status_code == 404, url
    assert client.post(refresh).status_code == 404


def test_anonymous_is_sent_to_login(client, hh_like):
    for url in [*_urls(hh_like.slug), reverse("quality:refresh", args=[hh_like.slug])]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


def test_staff_nav_links_to_quality(client, admin_user):
    client.force_login(admin_user)
    assert reverse("quality:index").encode() in client.get(reverse("home")).content


def test_pending_page_polls_until_computed(client, admin_user, hh_like):
    client.force_login(admin_user)
    url = reverse("quality:discretion", args=[hh_like.slug])
    page = client.get(url).content.decode()
    assert "Recomputing" in page and "every 3s" in page
    report = MetricsReport.objects.get(kind="discretion")
    assert report.params == {"reference": "oracle", "bootstrap": reports.DEFAULT_BOOTSTRAP}
    reports.refresh_due_reports(hh_like.pk)
    partial = client.get(url, HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    assert "<html" not in body and body.startswith('<div id="quality-body"')
    assert "every 3s" not in body and "HX-Request" in partial["Vary"]
    # category split, DA chart, PS heatmap with counts, priorities, DD matrix
    assert "<svg" in body and 'data-heatmap="ps"' in body and 'data-heatmap="dd"' in body
    assert "consensus" in body and "Revealed priority vs declared precedence" in body
    assert "<small>1</small>" in body  # a PS cell shows its conflict count


def test_discretion_page_selects_reference_and_annotator(client, admin_user, hh_like):
    client.force_login(admin_user)
    url = reverse("quality:discretion", args=[hh_like.slug])
    reports.compute_and_store(hh_like, "discretion", {"reference": None})
    body = client.get(url + "?reference=&annotator=rm_a").content.decode()
    assert "No principle verdicts from this source" in body
    assert "Principle supremacy — rm_a" in body
    # an unknown reference falls back to the default (the oracle)
    client.get(url + "?reference=nobody")
    assert MetricsReport.objects.filter(params__reference="oracle").exists()


def test_project_and_annotator_pages_render_payloads(client, admin_user, hh_like):
    client.force_login(admin_user)
    reports.compute_and_store(hh_like, "quality", {"scope": "all"})
    reports.compute_and_store(hh_like, "discretion", {"reference": "oracle"})  # page default
    body = client.get(reverse("quality:project", args=[hh_like.slug])).content.decode()
    assert "Krippendorff" in body and "rm_a" in body and "Per principle" in body
    body = client.get(reverse("quality:annotator", args=[hh_like.slug, "rm_a"])).content.decode()
    assert (
        "Reliability" in body and "Revealed priority" in body and "discretion arbitrariness" in body
    )


def test_refresh_button(client, admin_user, hh_like):
    client.force_login(admin_user)
    url = reverse("quality:refresh", args=[hh_like.slug])
    reports.compute_and_store(hh_like, "quality", {"scope": "all"})
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Trigger"] == "metrics-refresh"
    assert MetricsReport.objects.filter(refresh_due_at__isnull=False).count() == 1
    page = reverse("quality:discretion", args=[hh_like.slug]) + "?annotator=human"
    assert client.post(url, {"next": page})["Location"] == page
    fallback = client.post(url, {"next": "https://evil.example/"})["Location"]
    assert fallback == reverse("quality:project", args=[hh_like.slug])
