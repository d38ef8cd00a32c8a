// live-worker.js — the Live traffic page's MQTT client, off the page's thread (docs/CONSOLE.md
// "Live traffic"): mqtt.js over /mqtt parses every record here; ten times a second the page
// gets the newest few to draw and the count of those it will not draw. At thousands of
// records a second the page samples, says so, and keeps answering.
import mqtt from "mqtt";

const MAX_PENDING = 2000, PER_FLUSH = 50, PREVIEW = 200, FULL = 65536;
const dec = new TextDecoder();
let client = null, paused = false, pending = [], dropped = 0;

function start({ url, topic, since }) {
  if (client) client.end(true);
  pending = [];
  dropped = 0;
  client = mqtt.connect(url, { protocolVersion: 5, clean: true, reconnectPeriod: 0, timerVariant: "native",
    clientId: `console-${Math.random().toString(16).slice(2, 10)}` });
  client.on("connect", () => {
    const opts = { qos: 0 };
    if (since) opts.properties = { userProperties: { "kz-replay-since": since } };
    client.subscribe(topic, opts, (err, granted) => {
      const rc = granted && granted[0] ? granted[0].qos : 128;
      postMessage({ status: err || rc >= 128 ? `refused (reason ${rc})` : `subscribed to ${topic}`, topic });
    });
  });
  client.on("error", (e) => postMessage({ status: `error: ${e.message}` }));
  client.on("message", (t, payload, packet) => {
    if (paused) return;
    pending.push({ at: Date.now(), topic: t, payload, up: (packet.properties && packet.properties.userProperties) || {} });
    if (pending.length > MAX_PENDING) dropped += pending.splice(0, pending.length - MAX_PENDING).length;
  });
}

setInterval(() => {
  if (!pending.length) return;
  const batch = pending.slice(-PER_FLUSH);
  dropped += pending.length - batch.length;
  pending = [];
  postMessage({ dropped, rows: batch.map((m) => ({ at: m.at, topic: m.topic, up: m.up,
    preview: dec.decode(m.payload.subarray(0, PREVIEW)), full: dec.decode(m.payload.subarray(0, FULL)) })) });
}, 100);

onmessage = (ev) => {
  const m = ev.data;
  if (m.cmd === "start") start(m);
  else if (m.cmd === "pause") paused = m.value;
  else if (m.cmd === "stop" && client) client.end(true);
};
