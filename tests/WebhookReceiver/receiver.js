// A webhook receiver as an operator would write one: every delivery is verified with the Standard Webhooks reference
// library (npm 'standardwebhooks', not this project's code). One JSON line per delivery on stdout:
//   {"ok":true,"id":"<webhook-id>","eventId":12,"type":"node.removed","data":{...}}  -> answered 204
//   {"ok":false,"error":"..."}                                                         -> answered 400
// Usage: node receiver.js PORT SECRET [FAIL_STATUS]   (FAIL_STATUS: answer every verified delivery with it instead)
const http = require("http");
const { Webhook } = require("standardwebhooks");

const [port, secret, failStatus] = process.argv.slice(2);
const webhook = new Webhook(secret);

http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    let payload;
    try {
      payload = webhook.verify(body, request.headers);
    } catch (error) {
      console.log(JSON.stringify({ ok: false, error: String(error && error.message || error) }));
      response.writeHead(400).end();
      return;
    }
    console.log(JSON.stringify({ ok: true, id: request.headers["webhook-id"], eventId: payload.data.id, type: payload.type, data: payload.data }));
    response.writeHead(failStatus ? Number(failStatus) : 204).end();
  });
}).listen(Number(port), "127.0.0.1", () => console.log(JSON.stringify({ listening: Number(port) })));
