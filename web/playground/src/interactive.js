// One interactive job over `/api/v2/connect`: Piston's frames (init, data, signal) plus
// pistond's `eof`; output arrives as it is produced. Close codes become readable sentences.

const CLOSE_TEXT = {
  1000: "The connection was closed.",
  1001: "The server is going away.",
  1006: "The connection was lost.",
  1009: "A message was too large for the server.",
  1011: "The server failed while running the job.",
  4000: "Already initialised: the session had sent its program once.",
  4001: "Initialisation timeout: the server did not get the program in time.",
  4002: "The server reported an error (shown above).",
  4003: "Not yet initialised: input was sent before the program.",
  4004: "Only standard input can be written.",
  4005: "That signal name is not valid.",
  4999: "The job completed.",
};

/** A readable sentence for a WebSocket close code. */
export function closeText(code, reason) {
  const text = CLOSE_TEXT[code] || `The connection closed (code ${code}).`;
  return reason ? `${text} [${code} ${reason}]` : `${text} [${code}]`;
}

export class InteractiveSession {
  /**
   * @param {string} url  the `/api/v2/connect` WebSocket URL.
   * @param {object} init  the `init` frame's fields (the `/execute` body).
   * @param {object} on  `runtime`, `stage`, `data`, `exit`, `error`, `close` callbacks.
   */
  constructor(url, init, on) {
    this.on = on;
    this.open = false;
    this.socket = new WebSocket(url);
    this.socket.addEventListener("open", () => {
      this.open = true;
      this.send({ type: "init", ...init });
    });
    this.socket.addEventListener("message", (event) => this.receive(event.data));
    this.socket.addEventListener("close", (event) => {
      this.open = false;
      on.close(event.code, event.reason);
    });
  }

  receive(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      this.on.error("the server sent a frame that is not JSON");
      return;
    }
    const handler = { runtime: "runtime", stage: "stage", data: "data", exit: "exit", error: "error" }[frame.type];
    if (handler === "data") this.on.data(frame.stream, frame.data);
    else if (handler === "error") this.on.error(frame.message);
    else if (handler) this.on[handler](frame);
  }

  send(frame) {
    if (this.open) this.socket.send(JSON.stringify(frame));
  }

  /** Write text to the program's stdin. */
  write(text) {
    this.send({ type: "data", stream: "stdin", data: text });
  }

  /** Close the program's stdin (end of file). */
  eof() {
    this.send({ type: "eof" });
  }

  /** Deliver a signal to the program. */
  signal(name) {
    this.send({ type: "signal", signal: name });
  }

  /** Kill the program (SIGKILL to its process group). */
  kill() {
    this.signal("SIGKILL");
  }

  /** Leave: the server kills the job when its client goes away. */
  close() {
    this.socket.close(1000, "client closed");
  }
}
