export { BufferPool, sharedPool, IO_BUFFER_SIZE } from './buffer-pool.js';
export { joinPath, pathToDisplay, baseName, dirName, pathKey } from './paths.js';
