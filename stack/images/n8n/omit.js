"use strict";
// Leaves the packages named in omit.txt out of the offline n8n stand-in (run by prepare.sh with
// the Node.js it installs; no dependencies).
//
//   node omit.js lock  <omit.txt> <lock in> <lock out>
//     The lock without those packages and without everything only they needed: every
//     dependencies/peerDependencies/optionalDependencies edge to them goes, then every entry no
//     longer reachable from the root (resolved as Node resolves: nearest node_modules upwards).
//     `npm ci` then installs exactly the rest of the committed, npm-generated tree.
//   node omit.js stubs <omit.txt> <node_modules>
//     A stub package for each name in the top node_modules (Node looks upwards, so it serves
//     every package that asked for it): requiring it, or any path inside it, throws, naming it.
const fs = require("fs");
const path = require("path");

const [cmd, omitFile, ...args] = process.argv.slice(2);
const names = fs
  .readFileSync(omitFile, "utf8")
  .split("\n")
  .map((l) => l.replace(/#.*/, "").trim())
  .filter(Boolean);
const omit = new Set(names);
const KINDS = ["dependencies", "peerDependencies", "optionalDependencies"];

function lock(lockIn, lockOut) {
  const data = JSON.parse(fs.readFileSync(lockIn, "utf8"));
  const pkgs = data.packages;
  const before = Object.keys(pkgs).length;
  const nameOf = (p) => pkgs[p].name || p.slice(p.lastIndexOf("node_modules/") + 13);
  const present = new Set(Object.keys(pkgs).filter(Boolean).map(nameOf));
  const absent = names.filter((n) => !present.has(n));
  if (absent.length) throw new Error(`not in ${lockIn} (drop them from ${omitFile}): ${absent.join(" ")}`);
  for (const e of Object.values(pkgs)) {
    for (const k of KINDS) for (const d of Object.keys(e[k] || {})) if (omit.has(d)) delete e[k][d];
    for (const d of Object.keys(e.peerDependenciesMeta || {})) if (omit.has(d)) delete e.peerDependenciesMeta[d];
  }
  const resolve = (from, dep) => {
    for (let base = from; ; ) {
      const cand = base ? `${base}/node_modules/${dep}` : `node_modules/${dep}`;
      if (cand in pkgs) return cand;
      if (!base) return null;
      const i = base.lastIndexOf("/node_modules/");
      base = i >= 0 ? base.slice(0, i) : "";
    }
  };
  const keep = new Set([""]);
  const todo = [""];
  const add = (p) => {
    if (p !== null && p !== undefined && p in pkgs && !keep.has(p)) keep.add(p), todo.push(p);
  };
  while (todo.length) {
    const p = todo.pop();
    const e = pkgs[p];
    if (e.link) add(e.resolved);
    for (const k of KINDS) for (const d of Object.keys(e[k] || {})) add(resolve(p, d));
  }
  for (const p of Object.keys(pkgs)) if (!keep.has(p)) delete pkgs[p];
  fs.writeFileSync(lockOut, JSON.stringify(data, null, 2) + "\n");
  console.log(`${before - 1} -> ${keep.size - 1} lock entries`);
}

function stubs(nodeModules) {
  for (const name of names) {
    const dir = path.join(nodeModules, name);
    if (fs.existsSync(dir)) throw new Error(`${dir} exists: ${name} was installed although omitted`);
    fs.mkdirSync(dir, { recursive: true });
    const manifest = {
      name,
      version: "0.0.0-omitted",
      description: "left out of stackcheck's offline n8n stand-in (stack/images/n8n/omit.txt)",
      private: true,
      main: "index.js",
      exports: { ".": "./index.js", "./package.json": "./package.json", "./*": "./index.js" },
    };
    const message =
      `${name} is left out of stackcheck's offline n8n stand-in (stack/images/n8n/omit.txt): ` +
      "what needs it does not work there; the official n8nio/n8n image has it";
    fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify(manifest, null, 2) + "\n");
    fs.writeFileSync(path.join(dir, "index.js"), `"use strict";\nthrow new Error(${JSON.stringify(message)});\n`);
  }
  console.log(`${names.length} stubs`);
}

if (cmd === "lock" && args.length === 2) lock(...args);
else if (cmd === "stubs" && args.length === 1) stubs(...args);
else {
  console.error("usage: node omit.js lock <omit.txt> <lock in> <lock out> | stubs <omit.txt> <node_modules>");
  process.exit(2);
}
