"""End-to-end check of the operator console in a real browser (Playwright, Chromium).

Driven by tests/console_e2e.rs, which starts `openspot serve --demo` and passes:
  BASE_URL   the server's base URL
  LINK       the one-time console link the demo printed
  SHOTS      a directory for screenshots (docs/console/)
  CHROMIUM   the Chromium executable
Exits non-zero (with the reason on stderr) when a step fails.
"""

import os
import sys

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["BASE_URL"]
LINK = os.environ["LINK"]
SHOTS = os.environ["SHOTS"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, name), full_page=True)


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        # The link shows a button; only its POST signs in.
        page.goto(LINK)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        shot(page, "overview.png")

        # Keyboard: the first Tab reaches the skip link.
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()

        page.get_by_role("link", name="Members", exact=True).click()
        expect(page.get_by_role("heading", name="Members")).to_be_visible()
        # Selecting a row (htmx) updates the count without a reload.
        page.locator("input.pick").first.check()
        expect(page.locator("#selection")).to_have_text("1 selected")
        shot(page, "members.png")
        page.get_by_label("Search").fill("grace")
        page.get_by_role("button", name="Apply").click()
        page.get_by_role("link", name="Grace Hopper").click()
        expect(page.get_by_role("heading", name="Grace Hopper")).to_be_visible()
        shot(page, "member.png")

        # The rule builder counts live.
        page.goto(BASE + "/console/groups/new-smart")
        page.get_by_label("Name").fill("Accepted people")
        page.locator("#c0t0f").select_option("status")
        page.locator("#c0t0o").select_option("eq")
        page.locator("#c0t0v").fill("Accepted")
        page.locator("#c0t0v").dispatch_event("change")
        expect(page.locator("#live-count")).to_contain_text("members match now")
        shot(page, "smart-group-builder.png")

        # Phone width.
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.context.add_cookies(page.context.cookies())
        phone.goto(BASE + "/console/members")
        expect(phone.get_by_role("heading", name="Members")).to_be_visible()
        width = phone.evaluate("document.documentElement.scrollWidth")
        if width > 420:
            raise AssertionError(f"the members page scrolls sideways at phone width ({width} px)")
        shot(phone, "members-phone.png")
        browser.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the reason goes to the Rust test
        print(f"console e2e failed: {e}", file=sys.stderr)
        sys.exit(1)
