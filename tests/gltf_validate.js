// Validates glTF 2.0 files with the Khronos glTF validator (npm gltf-validator) and prints
// one JSON report per file: {"file", "errors", "warnings", "infos", "messages": [...]}.
// Usage: node tests/gltf_validate.js a.glb [b.glb ...]; exit status 1 when a file has errors.
'use strict';
const fs = require('fs');
const validator = require('gltf-validator');

async function validate(file) {
  const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
    maxIssues: 100,
  });
  const issues = report.issues;
  return {
    file,
    errors: issues.numErrors,
    warnings: issues.numWarnings,
    infos: issues.numInfos,
    messages: issues.messages.map((m) => `${m.severity} ${m.code} ${m.pointer || ''}: ${m.message}`),
  };
}

(async () => {
  let failed = false;
  for (const file of process.argv.slice(2)) {
    const result = await validate(file);
    failed = failed || result.errors > 0;
    console.log(JSON.stringify(result));
  }
  process.exit(failed ? 1 : 0);
})().catch((e) => {
  console.error(`error: ${e.message || e}`);
  process.exit(2);
});
