// Runs the published npm piston-client against a gateway; prints one JSON object.
// Usage: node run_client.mjs <server url>
import piston from "piston-client";

const client = piston({ server: process.argv[2] });
const runtimes = await client.runtimes();
const result = await client.execute("python", 'print("hi")');
const failed = await client.execute("python", "print(", { version: "latest" });
console.log(JSON.stringify({ runtimes, result, failed }));
