export * from './send.js';
export * from './serve-read.js';
export * from './throttle.js';
export * from './delta.js';
