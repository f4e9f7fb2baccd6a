// ws-broadcast: the reference of scripts/bench's fan-out rows (bench/events.py):
// npm `ws` (pinned in bench/package.json) broadcasting every line of stdin, as
// one text message, to every connected WebSocket client, the way its README's
// broadcast example does. Usage: node ws-broadcast.js PORT
'use strict';
const readline = require('node:readline');
const { WebSocketServer, WebSocket } = require('ws');

const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2]), backlog: 4096 });
wss.on('listening', () => console.log('LISTENING'));
wss.on('connection', (ws) => ws.on('error', () => {}));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  for (const client of wss.clients) {
    if (client.readyState === WebSocket.OPEN) client.send(line);
  }
});
