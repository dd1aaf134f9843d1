export { hashFile, hashFd, type ByteRange } from './hash-file.js';
