import { parentPort } from 'node:worker_threads';
import { runBatchSync, type CopyJob } from './sync-ops.js';

interface BatchMessage {
  id: number;
  jobs: CopyJob[];
}

// One scratch buffer per worker for its whole life: small files fit in one read.
const scratch = Buffer.allocUnsafeSlow(1 << 20);

parentPort?.on('message', (msg: BatchMessage) => {
  parentPort!.postMessage({ id: msg.id, outcomes: runBatchSync(msg.jobs, scratch) });
});
