// The playground in Debian's firefox-esr, driven over WebDriver BiDi by puppeteer-core (no
// geckodriver, no browser download): `node playground_firefox.mjs <url> <profile> <screenshots>`.
// Runs python with stdin, C (compile and run), an interactive echo with EOF and a share link,
// and prints one JSON object: what each step saw, the page's errors and CSP violations.
import puppeteer from "puppeteer-core";

const [url, profile, screenshots] = process.argv.slice(2);
const WAIT = { timeout: 30000 };
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: "/usr/bin/firefox-esr",
  headless: true,
  userDataDir: profile,
  extraPrefsFirefox: { "datareporting.policy.dataSubmissionEnabled": false },
});
const seen = {};
const errors = [];
let page = null;
try {
  page = await browser.newPage();
  page.on("pageerror", (error) => errors.push(`page error: ${error}`));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console: ${message.text()}`);
  });
  await page.evaluateOnNewDocument(() => {
    window.__violations = [];
    document.addEventListener("securitypolicyviolation", (event) => {
      window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
    });
  });
  await page.setViewport({ width: 1280, height: 1000 });

  const open = async (target) => {
    await page.goto(target);
    await page.waitForSelector("body[data-ready]", WAIT);
  };
  const typeProgram = async (text) => {
    const editor = await page.waitForSelector("#editor >>> .cm-content", WAIT);
    await editor.click();
    await page.keyboard.down("Control");
    await page.keyboard.press("a");
    await page.keyboard.up("Control");
    await page.keyboard.press("Delete");
    await page.keyboard.type(text);
  };
  const stage = (name, stream) => page.waitForFunction(
    (n, s) => document.querySelector(`#results [data-stage=${n}] pre[data-stream=${s}]`)?.textContent,
    WAIT, name, stream,
  ).then((handle) => handle.jsonValue());
  const violations = async () => page.evaluate(() => window.__violations);

  await open(url + "/");
  await page.select("#language", "python");
  await typeProgram('name = input()\nprint("hello,", name)');
  await page.type("#stdin", "firefox");
  await page.click("#run");
  seen.python = await stage("run", "stdout");
  await page.screenshot({ path: `${screenshots}/firefox-01-python.png` });

  await page.select("#language", "c");
  await page.click("#example");
  await page.waitForFunction(
    () => document.querySelector("#editor").shadowRoot.textContent.includes("#include"), WAIT);
  await page.click("#run");
  seen.c_run = await stage("run", "stdout");
  seen.c_compile = await page.$eval("#results [data-stage=compile] .badge", (n) => n.textContent);
  await page.screenshot({ path: `${screenshots}/firefox-02-c.png` });

  await page.select("#language", "python");
  await typeProgram('import sys\nfor line in sys.stdin: print("echo:", line, end="", flush=True)');
  await page.$eval("#stdin", (n) => { n.value = ""; });
  await page.select("#mode", "interactive");
  await page.click("#run");
  await page.waitForFunction(() => !document.querySelector("#console-line").disabled, WAIT);
  await page.type("#console-line", "from firefox\n");
  await page.waitForFunction(
    () => document.querySelector("#console-output").textContent.includes("echo: from firefox"), WAIT);
  await page.click("#console-eof");
  await page.waitForFunction(
    () => document.querySelector("#console-state").textContent.includes("4999"), WAIT);
  seen.console = await page.$eval("#console-output", (n) => n.textContent);
  seen.console_state = await page.$eval("#console-state", (n) => n.textContent);
  await page.screenshot({ path: `${screenshots}/firefox-03-interactive.png` });

  await page.select("#mode", "batch");
  await typeProgram('print("shared", input())');
  await page.type("#stdin", "in firefox");
  await page.click("#share");
  const link = await page.$eval("#share-url", (n) => n.value);
  seen.violations_before_link = await violations();
  await page.goto("about:blank");
  await open(link);
  await page.click("#run");
  seen.shared = await stage("run", "stdout");
  seen.shared_stdin = await page.$eval("#stdin", (n) => n.value);
  await page.screenshot({ path: `${screenshots}/firefox-04-share-link.png` });
  seen.violations = await violations();
  seen.user_agent = await browser.version();
} catch (error) {
  errors.push(`driver: ${error.message} (at step ${Object.keys(seen).length + 1})`);
  await page?.screenshot({ path: `${screenshots}/firefox-failed.png` }).catch(() => {});
} finally {
  await browser.close();
}
console.log(JSON.stringify({ seen, errors }));
