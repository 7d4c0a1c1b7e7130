'use strict';

//
// A Primus 8.0.9 server (the fixture's, testdata/node) that tells the client
// what it made of each frame, on the same connection and in order:
//   spark "data" event X  -> {"data": X}
//   spark "heartbeat"     -> {"heartbeat": true}   (a pong was accepted)
//   spark "error"         -> {"error": "<message>"} (undecodable frame)
// Id requests are answered by Primus itself ("primus::id::<spark id>").
// testdata/node/server.js ignores data that is not a command object, so it
// cannot show what Primus does with a string.
//
// Usage: node spark-report.js <path of the primus module>
// Prints "listening <port>" (127.0.0.1); exits when stdin closes.
//

var http = require('http');
var Primus = require(process.argv[2]);

var server = http.createServer();
var primus = new Primus(server, { transformer: 'websockets', parser: 'json', pingInterval: false });

primus.on('connection', function (spark) {
  spark.on('data', function (data) { spark.write({ data: data }); });
  spark.on('heartbeat', function () { spark.write({ heartbeat: true }); });
  spark.on('error', function (err) { spark.write({ error: String(err && err.message) }); });
});

server.listen(0, '127.0.0.1', function () {
  process.stdout.write('listening ' + server.address().port + '\n');
});
process.stdin.on('end', function () { process.exit(0); });
process.stdin.resume();
