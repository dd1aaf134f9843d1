// Public surface of the agent package: the engine both ends of a session share.
export * from './scan/index.js';
export * from './apply/index.js';
export * from './jail/index.js';
export * from './verify/index.js';
export * from './util/index.js';
export * from './transfer/index.js';
export { Channel, type FrameHandler } from './session/channel.js';
export { Agent, FEATURE_FSYNC, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_SESSIONS, HELLO_TIMEOUT_MS, type AgentConfig } from './session/agent.js';
export { StreamReceiver, metaOf, type ReceiverContext } from './session/receiver.js';
export { NativeBatcher } from './session/native-batcher.js';
export { clientProof, serverProof, proofMatches, newNonce } from './session/auth.js';
export { serveList, toWireEntry } from './session/list.js';
export { errorInfo, displayOf, type ResultInit } from './session/results.js';
export * from './native/index.js';
export * from './transfer/block-cache.js';
