export { PathJail, checkRelative } from './jail.js';
