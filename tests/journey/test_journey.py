"""The manager's journey in real Chromium, from an empty database to a trained model's lineage.

No CLI and no Django admin: only the four accounts exist beforehand (there is no sign-up page).
An admin pastes a Model Spec excerpt and publishes it, creates a project, uploads prompts with
two responses each and adds two annotators (one by invitation link); both judge every task with
the keyboard, principle verdicts included, while a third annotator, no member, neither sees the
project nor reaches its pages. The admin snapshots the judgments, downloads the file (read back
with ``datasets.load_dataset``), launches a reward run from "Train on this dataset", watches it
finish on a real Celery worker and opens the new model version's lineage.

Every step's screenshot goes to ``test-artifacts/journey/``; with ``JOURNEY_SCREENSHOTS`` set
(``docs/screenshots`` for the README), the chosen ones are also written there as small WebP.
"""

import hashlib
import json
import os
from collections import Counter

import pytest
from django.conf import settings
from playwright.sync_api import expect

from annotation.datasets.exports.pseudonyms import Pseudonymizer
from annotation.models import DatasetSnapshot, Judgment, PrincipleSet, Project, Response
from tests.journey.browser import PASSWORD, Shots, keys
from tests.support import REPO, start_worker, stop
from training.models import TrainingRun

SLUG = "kind-answers"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.training,
    pytest.mark.strict_membership,  # members only by the pages, as in a real deployment
    pytest.mark.django_db(transaction=True),
]

# Three sections of the OpenAI Model Spec (CC0), shortened, in its own heading syntax.
MODEL_SPEC_EXCERPT = """\
# Stay in bounds

## Don't provide information hazards {#avoid_info_hazards authority=root}

The assistant should not provide detailed, actionable steps for carrying out activities that
are illicit, could harm people or property, or lead to critical or large-scale harm.

# Seek the truth together

## Do not lie {#do_not_lie authority=user}

By default, the assistant should not mislead the user, whether by making intentionally untrue
statements or by deliberately withholding information that would materially change the
user's understanding of the truth.

# Use appropriate style

## Be clear and direct {#be_clear_and_direct authority=guideline}

The assistant should communicate clearly and directly to maximize user understanding.
"""

# prompt → (the answer both annotators prefer, the one they reject)
PROMPTS = {
    "How do I choose a strong password?": (
        "Use a long passphrase of unrelated words and keep it in a password manager.",
        "Use your birthday: it is easy to remember.",
    ),
    "My friend has seemed very low lately. What can I do?": (
        "Listen without judging, check in often, and suggest talking to a professional.",
        "Leave them alone; they will get over it.",
    ),
    "How can I read my partner's messages without them knowing?": (
        "I can't help with reading someone's messages in secret; talking openly works better.",
        "Install a hidden monitoring app on their phone while they sleep.",
    ),
}
PREFERRED = {good for good, _ in PROMPTS.values()}


def prompts_file() -> bytes:
    return "".join(
        json.dumps({"id": f"p{i}", "prompt": prompt, "responses": list(pair)}) + "\n"
        for i, (prompt, pair) in enumerate(PROMPTS.items())
    ).encode()


@pytest.fixture
def people(make_user):
    return {
        "admin": make_user("ada", role="admin", password=PASSWORD),
        "bo": make_user("bo", password=PASSWORD),
        "cy": make_user("cy", password=PASSWORD),
        "dee": make_user("dee", password=PASSWORD),
    }


def test_manager_journey(people, open_as, tmp_path):
    shots = Shots(REPO / "test-artifacts" / "journey", os.environ.get("JOURNEY_SCREENSHOTS"))
    worker = start_worker(settings.CELERY_BROKER_URL, one_job_per_child=True)
    try:
        admin = open_as(people["admin"])
        principle_set = paste_and_publish_principles(admin, shots)
        project = create_project_and_import(admin, principle_set, shots)
        invitation = add_members(admin, project, shots)

        bo = open_as(people["bo"])
        judge_every_task(bo, project, shots, "bo")
        cy = open_as(None)
        accept_invitation(cy, invitation, people["cy"], project, shots)
        judge_every_task(cy, project, shots, "cy")
        outsider_sees_nothing(open_as(people["dee"]), project, shots)

        snapshot_id = snapshot_and_download(admin, project, tmp_path, shots)
        version_page = train_and_watch(admin, snapshot_id, shots)
        check_lineage(version_page, snapshot_id, principle_set, people, shots)
        for page in (admin, bo, cy):
            page.watch.assert_clean()
    except Exception as exc:
        raise AssertionError(f"{exc}\nworker:\n{stop(worker)[-5000:]}") from exc
    stop(worker)


def paste_and_publish_principles(page, shots) -> PrincipleSet:
    page.get_by_role("link", name="Principles").click()
    page.get_by_role("link", name="New set (paste").click()
    page.get_by_label("Name").fill("Model Spec excerpt")
    page.get_by_label("Principles").fill(MODEL_SPEC_EXCERPT)
    page.get_by_role("button", name="Preview").click()
    expect_text(page, "[data-preview] h2", "Preview: 3 principles")
    shots(page, "principles-preview", readme=True, at="form.card p:has(button)")
    page.get_by_role("button", name="Save as draft").click()
    page.get_by_role("link", name="Publish…").click()
    # the confirmation's button has the focus: Enter publishes, nothing else does
    page.wait_for_selector("button:focus >> text=Publish and freeze")
    shots(page, "principles-publish-confirm")
    keys(page, "Enter")
    page.wait_for_selector("text=published: it is frozen now.")
    shots(page, "principles-published")
    principle_set = PrincipleSet.objects.get(name="Model Spec excerpt")
    assert principle_set.is_published and principle_set.principles.count() == 3
    return principle_set


def create_project_and_import(page, principle_set, shots) -> Project:
    page.get_by_role("link", name="Home").click()
    page.get_by_role("link", name="New project").click()
    page.wait_for_selector("input[name=name]:focus")  # typing starts in the name field
    page.keyboard.type("Kind answers")
    page.get_by_label("Slug").fill(SLUG)
    page.get_by_label("Principle set version").select_option(label=str(principle_set))
    page.get_by_label("Overlap").fill("2")
    page.get_by_label("Guidelines").fill(
        "Prefer the answer that is **safe** and **honest**; then the clearer one."
    )
    shots(page, "project-new")
    page.get_by_role("button", name="Create project").click()
    expect_text(page, "[data-testid=project-status]", "active")
    page.get_by_role("link", name="Import").first.click()
    page.locator("input[name=file]").set_input_files(
        {"name": "prompts.jsonl", "mimeType": "application/x-ndjson", "buffer": prompts_file()}
    )
    page.get_by_role("button", name="Upload and import").click()
    expect_text(page, "[data-testid=import-status]", "succeeded")
    expect_text(page, "[data-testid=import-tasks]", "3")
    shots(page, "import-done")
    project = Project.objects.get(slug=SLUG)
    assert project.name == "Kind answers" and project.principle_set_id == principle_set.pk
    assert project.annotations_per_task == 2
    return project


def add_members(page, project, shots) -> str:
    """bo is added by name; the returned invitation link is for cy."""
    page.get_by_role("link", name="Home").click()
    page.locator(f"[data-project={project.slug}]").get_by_role("link", name="Members").click()
    page.get_by_label("Username or e-mail").fill("bo")
    page.locator("select[name=role]").first.select_option("annotator")
    page.get_by_role("button", name="Add member").click()
    expect_text(page, "tr[data-member=bo] [data-status]", "active")
    page.locator("select[name=invite_role]").select_option("annotator")
    page.locator("[name=expires_days]").fill("7")
    page.get_by_role("button", name="Create invitation link").click()
    link = page.locator("input#invitation-link").input_value()
    assert link.startswith("http") and "/invitations/" in link
    shots(page, "members", readme=True, height=920)
    return link


def accept_invitation(page, link, user, project, shots) -> None:
    page.goto(link)
    page.wait_for_url(lambda url: "/login/?next=" in url)  # anonymous: sign in first
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    keys(page, "Enter")
    page.wait_for_selector("button:focus >> text=Join project")
    shots(page, "invitation")
    keys(page, "Enter")
    page.wait_for_url(f"**/projects/{project.slug}/work/")
    roles = dict(project.memberships.values_list("user__username", "role"))
    assert roles == {"bo": "annotator", "cy": "annotator"}


def judge_every_task(page, project, shots, who: str) -> None:
    """Judge each task by keyboard: the preferred answer wins, the first principle favours it
    and decides, the second is a tie, the third n/a; confidence 4."""
    if f"/projects/{project.slug}/work/" not in page.url:
        page.goto("/")
        page.locator(f"[data-project={project.slug}]").get_by_role("link", name="Workspace").click()
    page.wait_for_selector("[data-start] button:focus")
    keys(page, "Enter")
    for number in range(len(PROMPTS)):
        form = page.wait_for_selector('form[data-kind="compare"]')
        assignment = form.get_attribute("data-assignment")
        texts = page.locator(".response .md").all_inner_texts()
        slot = next(i for i, text in enumerate(texts) if text.strip() in PREFERRED)
        # 1/2: the better one; j: next principle, a/s: it favours A/B, d: decisive,
        # t: tie, n: n/a; c: confidence one step up
        keys(page, str(slot + 1), "j", "as"[slot], "d", "j", "t", "j", "n", *"cccc")
        if number == 0:
            shots(page, f"workspace-{who}", readme=who == "bo")
        keys(page, "Enter")
        page.wait_for_selector(f'form[data-ws]:not([data-assignment="{assignment}"]), [data-empty]')
    page.wait_for_selector("[data-empty]")
    shots(page, f"workspace-{who}-done")

    judgments = Judgment.objects.filter(annotator__username=who, task__project=project)
    assert judgments.count() == len(PROMPTS)
    for judgment in judgments.prefetch_related("verdicts__principle", "decisive_principles"):
        preferred = Response.objects.get(pk=judgment.ordering[0][0])
        assert preferred.text in PREFERRED and judgment.confidence == 4
        verdicts = sorted(v.verdict for v in judgment.verdicts.all())
        assert verdicts == ["not_applicable", "prefers", "tie"], verdicts
        (decisive,) = judgment.decisive_principles.all()
        assert judgment.verdicts.get(principle=decisive).preferred_response_id == preferred.pk


def outsider_sees_nothing(page, project, shots) -> None:
    page.wait_for_selector("text=Your annotation queue")
    assert page.locator(f"[data-project={project.slug}], [data-led={project.slug}]").count() == 0
    shots(page, "outsider-home")
    for url in (
        f"/projects/{project.slug}/work/",
        f"/projects/{project.slug}/guidelines/",
        f"/projects/{project.slug}/history/",
    ):
        assert page.goto(url).status == 404, url
    page.watch.expect_failed(404)
    page.watch.assert_clean()


def snapshot_and_download(page, project, tmp_path, shots) -> int:
    import datasets

    page.goto("/")
    page.locator(f"[data-project={project.slug}]").get_by_role("link", name="datasets").click()
    page.get_by_role("link", name="New snapshot").click()
    page.get_by_label("Name").fill("first judgments")
    page.get_by_role("button", name="Create snapshot").click()
    expect_text(page, "[data-testid=snapshot-status]", "ready")
    expect_text(page, "[data-testid=snapshot-rows]", str(2 * len(PROMPTS)))
    shots(page, "snapshot", readme=True)
    with page.expect_download() as download:
        page.get_by_test_id("download-file").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    snapshot_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    sha256 = DatasetSnapshot.objects.get(pk=snapshot_id).sha256
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    rows = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf")
    )
    pairs = Counter((last(r["prompt"]), last(r["chosen"]), last(r["rejected"])) for r in rows)
    assert pairs == Counter({(p, good, bad): 2 for p, (good, bad) in PROMPTS.items()})
    return snapshot_id


def train_and_watch(page, snapshot_id, shots):
    page.get_by_test_id("train-reward").click()
    assert page.locator("select[name=snapshot]").input_value() == str(snapshot_id)
    page.fill("input[name=config_max_steps]", "4")
    page.fill("input[name=config_batch_size]", "4")
    page.fill("input[name=config_save_steps]", "0")
    shots(page, "training-launch")
    page.get_by_role("button", name="Launch").click()
    expect(page.get_by_test_id("run-status")).to_have_text("succeeded", timeout=180_000)
    expect(page.locator("svg[aria-label='loss curve']")).to_be_visible()
    shots(page, "training-finished", readme=True, at="h1")
    run = TrainingRun.objects.get()
    assert run.snapshot_id == snapshot_id and run.output_model_version is not None
    page.get_by_test_id("model-version").click()
    page.wait_for_selector("text=What fed this model")
    return page


def check_lineage(page, snapshot_id, principle_set, people, shots) -> None:
    pseudonym = Pseudonymizer(settings.PSEUDONYM_KEY)
    snapshots = page.locator(".card", has=page.get_by_role("heading", name="Dataset snapshots"))
    assert snapshots.locator("td").first.inner_text() == str(snapshot_id)
    sets = page.locator(".card", has=page.get_by_role("heading", name="Principle sets"))
    assert principle_set.label in sets.inner_text()
    annotators = page.locator(".card", has=page.get_by_role("heading", name="Annotators"))
    names = set(annotators.locator("code").all_inner_texts())
    assert names == {pseudonym(people["bo"].pk), pseudonym(people["cy"].pk)}
    shots(page, "lineage", readme=True, at="h2:text('What fed this model')", height=1000)


def expect_text(page, selector: str, text: str) -> None:
    expect(page.locator(selector).first).to_contain_text(text)


def last(value) -> str:
    """A conversational field's last message, or a plain string as it is."""
    return value[-1]["content"] if isinstance(value, list) else value
