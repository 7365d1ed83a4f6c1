// Read windows of Zarr v3 stores with zarrita.js (the reader browser explorers use) and hash what it returns.
// stdin:  {"jobs": [{"store": DIR, "reads": [{"array": "utm30/embeddings", "sel": [t, y0, y1, x0, x1]}, ...]}]}
// stdout: [[{"sha256": HEX} | {"error": "Name: message"}, ...], ...]   (one list per job, one entry per read)
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import FileSystemStore from "@zarrita/storage/fs";
import * as zarr from "zarrita";

function describe(e) {
  let text = `${e?.name ?? "Error"}: ${e?.message ?? e}`;
  for (let c = e?.cause; c; c = c.cause) text += ` <- ${c?.name ?? "Error"}: ${c?.message ?? c}`;
  return text;
}

async function readOne(root, read) {
  const arr = await zarr.open.v3(root.resolve(read.array), { kind: "array" });
  const [t, y0, y1, x0, x1] = read.sel;
  const sel = arr.shape.length === 4
    ? [t, null, zarr.slice(y0, y1), zarr.slice(x0, x1)]
    : [t, zarr.slice(y0, y1), zarr.slice(x0, x1)];
  const { data } = await zarr.get(arr, sel);
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return { sha256: createHash("sha256").update(bytes).digest("hex") };
}

const { jobs } = JSON.parse(readFileSync(0, "utf8"));
const out = [];
for (const job of jobs) {
  const root = zarr.root(new FileSystemStore(job.store));
  const results = [];
  for (const read of job.reads) {
    try {
      results.push(await readOne(root, read));
    } catch (e) {
      results.push({ error: describe(e) });
    }
  }
  out.push(results);
}
process.stdout.write(JSON.stringify(out) + "\n");
