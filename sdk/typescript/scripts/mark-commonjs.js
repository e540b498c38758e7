// Marks a build folder as CommonJS: this package is "type": "module", so without this node would read the .js
// files of the CommonJS build (and TypeScript their .d.ts) as ES modules.
import { writeFileSync } from "node:fs";
import { join } from "node:path";

writeFileSync(join(process.argv[2], "package.json"), `${JSON.stringify({ type: "commonjs" })}\n`);
