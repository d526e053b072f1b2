"""End-to-end check of the operator console in a real browser (Playwright, Chromium).

Driven by tests/console_e2e.rs, which starts `openspot serve --demo` and passes:
  BASE_URL   the server's base URL
  LINK       the one-time console link the demo printed
  API_KEY    the demo spot's API key (the MeltingSpot dialect checks what the console did)
  SHOTS      a directory for screenshots (docs/console/); unset: no screenshots
  CHROMIUM   the Chromium executable
Exits non-zero (with the reason on stderr) when a step fails; prints one line per step.
"""

import csv
import io
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["BASE_URL"]
LINK = os.environ["LINK"]
API_KEY = os.environ["API_KEY"]
SHOTS = os.environ.get("SHOTS", "")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# Smart groups are computed in the background; a debug build on a busy machine is slow.
SLOW_MS = 30_000


def shot(page, name):
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, name), full_page=True)


def step(text):
    print(f"console e2e: {text}", flush=True)


def api(path, key=None):
    """GET a /v1 path with the API key: (status, parsed JSON body or None)."""
    req = urllib.request.Request(BASE + path, headers={"Authorization": key or API_KEY})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def api_all(path):
    """Every item of a paginated MeltingSpot list, and its announced total."""
    items, page, total = [], 1, None
    while True:
        sep = "&" if "?" in path else "?"
        status, body = api(f"{path}{sep}page={page}&limit=100")
        if status != 200:
            raise AssertionError(f"GET {path} answered {status}")
        total = body["total"]
        items += body["items"]
        if not body["items"] or len(items) >= total:
            return items, total
        page += 1


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def id_from_url(page, kind):
    m = re.search(rf"/console/{kind}/([0-9a-fA-F-]{{36}})$", page.url)
    check(m is not None, f"not on a {kind} page: {page.url}")
    return m.group(1)


def count_of(page):
    """The number in the page heading's count ("3 members", "2 participants")."""
    text = page.locator("h1 .count").inner_text()
    return int(text.split()[0].replace(",", ""))


def main():
    members, total = api_all("/v1/spotMembers")
    check(total == len(members) and total > 0, f"the demo spot lists {total} members")
    accepted = sorted(m["email"] for m in members if m["status"] == "Accepted")

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(15_000)

        # 1. The link shows a button; only its POST signs in.
        page.goto(LINK)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        shot(page, "overview.png")
        step("signed in with the one-time link")

        # Keyboard: the first Tab reaches the skip link.
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()

        # 2. Search and filter.
        page.get_by_role("link", name="Members", exact=True).click()
        expect(page.get_by_role("heading", name="Members")).to_be_visible()
        # Selecting a row (htmx) updates the count without a reload.
        page.locator("input.pick").first.check()
        expect(page.locator("#selection")).to_have_text("1 selected")
        shot(page, "members.png")
        page.get_by_role("button", name="Clear selection").click()
        expect(page.locator("#selection")).to_have_text("0 selected")
        page.get_by_label("Search").fill("grace")
        page.get_by_role("button", name="Apply").click()
        rows = page.locator("table tbody tr")
        expect(rows).to_have_count(1)
        page.get_by_role("link", name="Grace Hopper").click()
        expect(page.get_by_role("heading", name="Grace Hopper")).to_be_visible()
        shot(page, "member.png")

        # Phone width, in the same session.
        phone = context.new_page()
        phone.set_viewport_size({"width": 390, "height": 844})
        phone.goto(BASE + "/console/members")
        expect(phone.get_by_role("heading", name="Members")).to_be_visible()
        width = phone.evaluate("document.documentElement.scrollWidth")
        check(width <= 420, f"the members page scrolls sideways at phone width ({width} px)")
        shot(phone, "members-phone.png")
        phone.close()

        page.goto(BASE + "/console/members")
        page.get_by_label("Status", exact=True).select_option("Accepted")
        page.get_by_role("button", name="Apply").click()
        expect(page).to_have_url(re.compile(r"status=Accepted"))
        expect(rows).to_have_count(len(accepted))
        shown = sorted(rows.nth(i).locator("td").nth(2).inner_text().strip() for i in range(rows.count()))
        check(shown == accepted, f"the status filter shows {shown}, the API's Accepted members are {accepted}")
        for i in range(rows.count()):
            check(rows.nth(i).locator("td").nth(4).inner_text().strip() == "Accepted", "a row of another status")
        check(count_of(page) == len(accepted), "the heading's count is not the filter's")
        step(f"status filter shows the {len(accepted)} Accepted members")

        # 3. Bulk-add all that match to a new static group, confirming the count.
        page.get_by_role("link", name="Groups", exact=True).click()
        page.get_by_label("Name").fill("Accepted crew")
        page.get_by_role("button", name="Create group").click()
        expect(page.get_by_role("heading", name="Accepted crew")).to_be_visible()
        crew = id_from_url(page, "groups")
        page.goto(BASE + "/console/members?status=Accepted")
        page.get_by_label(f"all {len(accepted)} that match the filters").check()
        page.get_by_label("Action", exact=True).select_option("add_to_group")
        page.get_by_label("Group, course, status or property").select_option(crew)
        page.get_by_role("button", name="Review…").click()
        expect(page.get_by_role("heading", name="Confirm")).to_be_visible()
        expect(page.get_by_text(f"for {len(accepted)} members")).to_be_visible()
        expect(page.get_by_text("add to group “Accepted crew”")).to_be_visible()
        page.get_by_role("button", name=f"Yes, apply to {len(accepted)} members").click()
        expect(page.get_by_role("heading", name="Progress")).to_be_visible()
        expect(page.locator("#job")).to_contain_text("Finished.", timeout=SLOW_MS)
        expect(page.locator("#job")).to_contain_text(f"{len(accepted)} of {len(accepted)} done")
        in_crew, crew_total = api_all(f"/v1/groups/{crew}/spotMembers")
        check(crew_total == len(accepted), f"the API counts {crew_total} members in the group, {len(accepted)} were added")
        check(sorted(m["email"] for m in in_crew) == accepted, "the group does not hold the filtered members")
        page.goto(BASE + f"/console/groups/{crew}")
        check(count_of(page) == len(accepted), "the group page's count is not the API's")
        step(f"bulk-added {len(accepted)} members to a static group (API total {crew_total})")

        # 4. A smart group of two conditions; its live count, then its count once ready.
        surnames = ["Hopper", "Johnson", "Turing"]
        expected = sorted(
            m["email"] for m in members if m["status"] == "Accepted" and m["lastname"] in surnames
        )
        page.goto(BASE + "/console/groups/new-smart")
        page.get_by_label("Name").fill("Accepted pioneers")
        page.get_by_label("Conditions joined by").select_option("AND")
        page.locator("#c0t0f").select_option("status")
        page.locator("#c0t0o").select_option("eq")
        page.locator("#c0t0v").fill("Accepted")
        page.locator("#c1t0f").select_option("lastname")
        page.locator("#c1t0o").select_option("in")
        page.locator("#c1t0v").fill(",".join(surnames))
        page.locator("#c1t0v").dispatch_event("change")
        expect(page.locator("#live-count")).to_have_text(f"{len(expected)} members match now")
        shot(page, "smart-group-builder.png")
        page.get_by_role("button", name="Create smart group").click()
        expect(page.get_by_role("heading", name="Accepted pioneers")).to_be_visible()
        smart = id_from_url(page, "groups")
        deadline = time.monotonic() + SLOW_MS / 1000
        while "Smart group · ready" not in page.locator("main p.muted").first.inner_text():
            check(time.monotonic() < deadline, "the smart group is not ready after 30 s")
            time.sleep(0.5)
            page.reload()
        shown_count = count_of(page)
        in_smart, smart_total = api_all(f"/v1/groups/{smart}/spotMembers")
        check(shown_count == smart_total, f"the console shows {shown_count} members, the API {smart_total}")
        check(sorted(m["email"] for m in in_smart) == expected, f"the smart group holds {in_smart}, not {expected}")
        status, g = api(f"/v1/groups/{smart}")
        check(status == 200 and len(g["rules"]["conditions"]) == 2, f"the saved rules are not two conditions: {g}")
        shot(page, "smart-group.png")
        step(f"smart group of two conditions ready with {smart_total} members (console {shown_count})")

        # 5. A course, linked to the static group: its members become participants.
        page.get_by_role("link", name="Courses", exact=True).click()
        page.get_by_label("Title").fill("Onboarding for the crew")
        page.get_by_label("Description").fill("Created by the browser test")
        page.get_by_role("button", name="Create course").click()
        expect(page.get_by_role("heading", name="Onboarding for the crew")).to_be_visible()
        course = id_from_url(page, "courses")
        page.get_by_label("Group", exact=True).select_option(crew)
        page.get_by_role("button", name="Link group").click()
        expect(page.locator("h1 .count")).to_have_text(f"{len(accepted)} participants")
        expect(page.get_by_label("Accepted crew")).to_be_visible()
        participants, p_total = api_all(f"/v1/courses/{course}/participants")
        check(p_total == len(accepted), f"the API counts {p_total} participants, the group has {len(accepted)}")
        emails = sorted(pp["spotMemberEmail"] for pp in participants)
        check(emails == accepted, f"the participants {emails} are not the group's members {accepted}")
        member_ids = sorted(pp["spotMemberId"] for pp in participants)
        check(member_ids == sorted(m["id"] for m in in_crew), "the participants' ids are not the group's members'")
        shot(page, "course.png")
        step(f"course linked to the group has {p_total} participants")

        # 6. Import a CSV with bad rows: preview, run, progress to the end, error CSV.
        good = 1500
        lines = ["email,firstname,lastname,seats"]
        lines += [f"imported{i:04}@example.com,Imported,Person {i},{i % 7}" for i in range(good)]
        bad = {
            "not-an-email": "not-an-email,Bad,Email,1",
            "": ",No,Email,1",
            "many-seats@example.com": "many-seats@example.com,Bad,Seats,lots",
        }
        bad_lines = {}
        for email, row in bad.items():
            lines.append(row)
            bad_lines[email] = len(lines)  # 1-based line number in the file
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
            f.write("\n".join(lines) + "\n")
            upload = f.name
        page.get_by_role("link", name="Import", exact=True).click()
        page.get_by_label("File").set_input_files(upload)
        page.get_by_role("button", name="Check the file").click()
        expect(page.get_by_role("heading", name="Import preview")).to_be_visible()
        summary = page.locator("main p").first.inner_text()
        check(
            f"Of {good + len(bad)} rows" in summary and f"create {good} members" in summary and f"fail {len(bad)}" in summary,
            f"the dry run's summary: {summary}",
        )
        failures = page.locator("table tbody tr")
        expect(failures).to_have_count(len(bad))
        shot(page, "import-preview.png")
        page.get_by_role("button", name="Import now").click()
        expect(page.get_by_role("heading", name="Progress")).to_be_visible()
        bar = page.locator("#job progress")
        seen = []
        started = time.monotonic()
        deadline = time.monotonic() + SLOW_MS / 1000 * 2
        while "Finished." not in page.locator("#job").inner_text():
            check(time.monotonic() < deadline, "the import did not finish in 60 s")
            seen.append(int(bar.get_attribute("value") or 0))
            time.sleep(0.2)
        took = time.monotonic() - started
        check(bar.get_attribute("value") == bar.get_attribute("max"), "the finished progress bar is not full")
        check(int(bar.get_attribute("max")) == good + len(bad), f"the bar counts {bar.get_attribute('max')} rows")
        expect(page.locator("#job")).to_contain_text(f"{good} created, 0 updated, {len(bad)} failed")
        expect(page.get_by_role("link", name="Import", exact=True)).to_have_attribute("aria-current", "page")
        expect(page.get_by_role("link", name="Import another file")).to_be_visible()
        shot(page, "import-progress.png")
        with page.expect_download() as dl:
            page.get_by_role("link", name="Download the failed rows (CSV)").click()
        report = list(csv.DictReader(io.StringIO(open(dl.value.path(), encoding="utf-8").read())))
        check(len(report) == len(bad), f"the error CSV has {len(report)} rows: {report}")
        for r in report:
            check(r["email"] in bad, f"the error CSV lists a row that was good: {r}")
            check(int(r["line"]) == bad_lines[r["email"]], f"line {r['line']} for {r['email']!r}, not {bad_lines[r['email']]}")
            check(r["reason"].strip() != "", f"no reason for {r}")
        check(sorted(r["email"] for r in report) == sorted(bad), "the error CSV misses a bad row")
        _, after = api("/v1/spotMembers?limit=1")
        check(after["total"] == total + good, f"the API counts {after['total']} members after importing {good}")
        step(
            f"imported {good + len(bad)} rows in {took:.1f} s (bar seen at {sorted(set(seen))} before full), "
            f"{len(bad)} failed, the error CSV lists them"
        )

        # 7. Rotate the API key: shown once; the old key stops, the new one works.
        check(api("/v1/spotMembers?limit=1")[0] == 200, "the demo key does not work before the rotation")
        page.get_by_role("link", name="Settings", exact=True).click()
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Rotate the API key").click()
        expect(page.get_by_role("status")).to_contain_text("shown only this once")
        new_key = page.locator("#secret").inner_text().strip()
        check(new_key and new_key != API_KEY, "no new key shown")
        old_status = api("/v1/spotMembers?limit=1")[0]
        new_status = api("/v1/spotMembers?limit=1", key=new_key)[0]
        check(old_status == 401, f"the old key answers {old_status} after the rotation")
        check(new_status == 200, f"the new key answers {new_status}")
        shot(page, "settings.png")
        page.goto(BASE + "/console/settings")
        expect(page.get_by_role("heading", name="API key")).to_be_visible()
        expect(page.locator("#secret")).to_have_count(0)
        check(api("/v1/spotMembers?limit=1", key=new_key)[0] == 200, "the new key stopped working")
        step("rotated the key: old key 401, new key 200, not shown again")

        # 8. Sign out: console pages send the browser to the sign-in page.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.goto(BASE + "/console/members")
        expect(page).to_have_url(BASE + "/console/login")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        check(not any(c["name"] == "openspot_console" for c in context.cookies()), "the session cookie survived")
        step("signed out; /console/members redirects to the sign-in page")

        browser.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the reason goes to the Rust test
        print(f"console e2e failed: {e}", file=sys.stderr)
        sys.exit(1)
