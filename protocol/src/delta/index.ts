export * from './rolling.js';
export * from './signature.js';
export * from './match.js';
export * from './patch.js';
export * from './wire.js';
