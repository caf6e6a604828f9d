// Runs the Node.js example verifier over cases read as JSON from stdin and prints the
// reasons as a JSON array (null for an accepted request). Usage:
//   node node_harness.js path/to/verify_signature.js < cases.json
"use strict";

const { verifyVizochokRequest } = require(process.argv[2]);

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const reasons = JSON.parse(input).map((testCase) =>
    verifyVizochokRequest({
      secret: testCase.secret,
      body: Buffer.from(testCase.body_base64, "base64"),
      headers: testCase.headers,
      now: testCase.now,
    }),
  );
  process.stdout.write(JSON.stringify(reasons));
});
