// Share links: the program, its language, version, stdin and arguments in the URL fragment, as
// base64url of UTF-8 JSON. The fragment never reaches the server, so sharing logs nothing there.

const PREFIX = "#run=";
const FORMAT = 1;

function toBase64Url(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function fromBase64Url(encoded) {
  const binary = atob(encoded.replaceAll("-", "+").replaceAll("_", "/"));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

/** The fragment (`#run=...`) for a program `{language, version, files, stdin, args}`. */
export function encodeProgram(program) {
  const data = {
    f: FORMAT,
    language: program.language,
    version: program.version,
    files: program.files.map((file) => ({ name: file.name, content: file.content })),
    stdin: program.stdin || "",
    args: program.args || [],
  };
  return PREFIX + toBase64Url(JSON.stringify(data));
}

/** Whether a fragment is a share link at all. */
export function isShared(hash) {
  return hash.startsWith(PREFIX);
}

/**
 * The program of a share fragment.
 * @throws {Error} with a readable message when the link is damaged.
 */
export function decodeProgram(hash) {
  let data;
  try {
    data = JSON.parse(fromBase64Url(hash.slice(PREFIX.length)));
  } catch {
    throw new Error("this share link is damaged (it does not decode)");
  }
  const text = (value) => typeof value === "string";
  if (
    !data || data.f !== FORMAT || !text(data.language) || !text(data.version) ||
    !Array.isArray(data.files) || data.files.length === 0 ||
    !data.files.every((file) => file && text(file.name) && text(file.content)) ||
    !text(data.stdin) || !Array.isArray(data.args) || !data.args.every(text)
  ) {
    throw new Error("this share link is damaged (unexpected content)");
  }
  return {
    language: data.language,
    version: data.version,
    files: data.files.map((file) => ({ name: file.name, content: file.content })),
    stdin: data.stdin,
    args: data.args,
  };
}
