"""The worklist seen by a radiologist: a real node (in process, port 0) fed by DCMTK storescu with a
hemorrhage series and a normal series, a real headless Chromium driving the pages, a real MLLP
listener receiving the ORU^R01 notifications and /metrics scraped afterwards (bearer token).

Screenshots go to artifacts/worklist.png and artifacts/study.png (gitignored).
"""
import json
import shutil
import subprocess
import urllib.request

import pydicom
import pytest
from structlog.testing import capture_logs
from prometheus_client.parser import text_string_to_metric_families

from ichnode.config import load_config
from ichnode.node import Node
from ichnode.synth import SynthSpec, write_series
from ichnode.web.auth import hash_password
from tests.helpers import REPO, free_port, require_tool, start_storescp, wait_until
from tests.triage.mllp import MllpListener

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "s3cret-for-tests"
METRICS_TOKEN = "scraper-token-for-tests-0123456789"


def metric_samples(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def accession(folder):
    first = sorted(folder.glob("*.dcm"))[0]
    return str(pydicom.dcmread(first, stop_before_pixels=True).AccessionNumber)


def sent_notifications(node, count):
    sent = [n for n in node.outbox.notifications() if n.state == "sent"]
    return sent if len(sent) >= count else None


def test_worklist_in_chromium_with_mllp_and_metrics(tmp_path, processes, caplog):
    storescu = require_tool("storescu")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing (Debian package chromium; scripts/setup --test installs it)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    expect = playwright.expect

    bleed = write_series(tmp_path / "bleed", SynthSpec(
        subtype="iph", volume_ml=40.0, matrix=256, seed=41, patient_name="BLEED^BETTY",
        patient_id="PAT-BLEED-41"))
    normal = write_series(tmp_path / "normal", SynthSpec(
        subtype="none", matrix=256, seed=42, patient_name="CLEAR^CHARLES", patient_id="PAT-NORM-42"))
    dest_port = free_port()
    start_storescp(processes, tmp_path / "pacs", dest_port)
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)

    with MllpListener() as ris, capture_logs() as events:
        config = load_config(None, overrides={
            "data_dir": str(tmp_path / "var"), "log_format": "json",
            "node.port": 0, "node.host": "127.0.0.1", "spool.prepared_slots": 0,
            "destinations": [{"name": "pacs", "ae_title": "DEST", "host": "127.0.0.1",
                              "port": dest_port}],
            "web": {"enabled": True, "host": "127.0.0.1", "port": 0, "refresh_s": 0.5,
                    "users": [{"name": "ann", "password_hash": hash_password(PASSWORD)}],
                    "metrics_token": METRICS_TOKEN},
            "notify": {"mllp": {"host": "127.0.0.1", "port": ris.port,
                                "receiving_application": "RIS"}}})
        node = Node(config).start()
        base = f"http://127.0.0.1:{node.web.port}"
        try:
            with playwright.sync_playwright() as pw:
                browser = pw.chromium.launch_persistent_context(
                    str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
                    args=CHROMIUM_ARGS, viewport={"width": 1500, "height": 700})
                try:
                    page = browser.new_page()
                    page.goto(base + "/")
                    assert "/login" in page.url
                    page.fill("input[name=username]", "ann")
                    page.fill("input[name=password]", PASSWORD)
                    page.click("button[type=submit]")
                    page.wait_for_selector("#worklist-body tr.empty")

                    # The normal series arrives first; the page is not reloaded from here on.
                    for folder in ("normal", "bleed"):
                        files = sorted(str(p) for p in (tmp_path / folder).glob("*.dcm"))
                        sent = subprocess.run([storescu, "-aet", "SCANNER", "-aec", "ICHNODE",
                                               "127.0.0.1", str(node.port), *files],
                                              capture_output=True, text=True)
                        assert sent.returncode == 0, sent.stderr
                    rows = page.locator("#worklist-body tr.row")
                    expect(rows).to_have_count(2, timeout=240_000)
                    top, second = rows.nth(0), rows.nth(1)
                    assert top.get_attribute("data-priority") == "critical"
                    assert second.get_attribute("data-priority") == "routine"
                    assert top.locator(".flag").all_inner_texts() == ["ICH"]
                    assert second.locator(".flag").count() == 0
                    assert top.locator(".accession").inner_text() == accession(tmp_path / "bleed")
                    assert "BLEED, BETTY" in top.locator(".patient").inner_text()
                    assert "mL" in top.locator(".volume").inner_text()
                    assert "ABC/2" in top.locator(".volume").inner_text()
                    assert "ichnode-classical-hu" in top.locator(".models").inner_text()
                    thumb = top.locator("img.thumb")
                    expect(thumb).to_have_js_property("complete", True)
                    assert thumb.evaluate("img => img.naturalWidth") > 0  # the PNG decoded
                    page.screenshot(path=str(artifacts / "worklist.png"), full_page=True)

                    job = int(top.get_attribute("data-job"))
                    top.locator("button.acknowledge").click()
                    expect(page.locator(f'tr[data-job="{job}"] .ack')).to_be_visible()
                    assert "acknowledged by ann" in page.locator(f'tr[data-job="{job}"] .ack').inner_text()
                    assert node.triage.worklist.get(job)["acknowledged_by"] == "ann"

                    page.click(f'tr[data-job="{job}"] .patient a')
                    page.wait_for_selector("section.keys img")
                    keys = page.locator("section.keys img")
                    assert keys.count() >= 1
                    for i in range(keys.count()):
                        expect(keys.nth(i)).to_have_js_property("complete", True)
                        assert keys.nth(i).evaluate("img => img.naturalWidth") > 0
                    assert "Acknowledged by ann" in page.inner_text(".actions")
                    page.screenshot(path=str(artifacts / "study.png"), full_page=True)
                finally:
                    browser.close()

            # The RIS got one ORU^R01 per study and answered AA.
            wait_until(lambda: len(ris.messages) >= 2, 60, what="two ORU messages")
            by_patient = {str(m.segment("PID")(3)): m for m in ris.messages}
            oru = by_patient["PAT-BLEED-41"]
            assert str(oru.segment("MSH")(9)) == "ORU^R01^ORU_R01"
            obx = {str(s(3)(1)(1)): s for s in oru.segments("OBX")}
            assert str(obx["PRIORITY"](5)) == "critical" and str(obx["PRIORITY"](8)) == "AA"
            assert float(str(obx["VOL_TOTAL"](5))) == pytest.approx(40.0, rel=0.2)
            assert str(obx["RESULTS_SENT"](5)) == "yes"
            assert str(by_patient["PAT-NORM-42"].segments("OBX")[0](5)) == "routine"
            notes = wait_until(lambda: sent_notifications(node, 2), 30,
                               what="both notifications recorded as sent")
            assert {n.ack_code for n in notes} == {"AA"}
            ttn = {n.job_id: n.time_to_delivery_s for n in notes}
            assert all(t > 0 for t in ttn.values())

            scrape = urllib.request.Request(base + "/metrics",
                                            headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            with urllib.request.urlopen(scrape, timeout=10) as r:
                samples = metric_samples(r.read().decode())
        finally:
            node.stop()

    n_files = len(list((tmp_path / "bleed").glob("*.dcm"))) + len(list((tmp_path / "normal").glob("*.dcm")))
    assert samples[("ichnode_instances_received_total", ())] == n_files
    assert samples[("ichnode_series_received_total", ())] == 2
    for stage in ("receive", "assemble", "infer", "write", "send"):
        assert samples[("ichnode_stage_seconds_count", (("stage", stage),))] == 2, stage
    assert samples[("ichnode_stage_seconds_count", (("stage", "notify"),))] == 2
    assert samples[("ichnode_time_to_notification_seconds_count", (("channel", "mllp"),))] == 2
    assert samples[("ichnode_studies_triaged_total", (("priority", "critical"),))] == 1
    assert samples[("ichnode_queue_depth", (("state", "queued"),))] == 0

    # Patient names and IDs never reach the logs (structlog events, and stdlib records such as
    # uvicorn's and pynetdicom's warnings).
    logs = json.dumps(events, default=str) + "\n".join(r.getMessage() for r in caplog.records)
    assert "job_triaged" in logs and "notification_sent" in logs and "login" in logs
    for secret in ("BLEED", "BETTY", "PAT-BLEED-41", "CLEAR^CHARLES", "PAT-NORM-42"):
        assert secret not in logs
    print("time to notification (first image received -> ORU ACK):",
          json.dumps({f"job {k}": round(v, 2) for k, v in ttn.items()}))
