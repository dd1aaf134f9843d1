import { ProtocolError } from './errors.js';

/** Highest protocol version this build speaks. Bump when the wire format changes incompatibly. */
export const PROTOCOL_VERSION = 1;
/** Lowest protocol version this build still accepts from a peer. */
export const MIN_PROTOCOL_VERSION = 1;
/** Software release, sent in Hello/Welcome for logs only; never used to gate behaviour. */
export const SOFTWARE_VERSION = '0.1.0';

/*
 * Optional capabilities are negotiated by name rather than implied by the version number, so
 * either side can drop one (a build without lz4, an agent that refuses native copy) without a
 * protocol bump. A feature is in use only when both ends list it.
 */
/** payloads may be LZ4-compressed (Data, DeltaOps) */
export const FEATURE_LZ4 = 'lz4';
/** xxhash64 may be used for file and chunk hashes */
export const FEATURE_XXH64 = 'xxh64';
/** rsync-style delta transfer (SignatureRequest, Signature, DeltaOps) */
export const FEATURE_DELTA = 'delta';
/** interrupted transfers continue from a verified .part prefix */
export const FEATURE_RESUME = 'resume';
/** the receiver may copy straight from a source path it can see (same host) */
export const FEATURE_NATIVE_COPY = 'native-copy';
/** large files may be split into chunks spread over several streams */
export const FEATURE_CHUNKS = 'chunks';

/** Every feature this build implements, in preference order. */
export const SUPPORTED_FEATURES: readonly string[] = Object.freeze([
  FEATURE_LZ4,
  FEATURE_XXH64,
  FEATURE_DELTA,
  FEATURE_RESUME,
  FEATURE_NATIVE_COPY,
  FEATURE_CHUNKS,
]);

/** What one end offers: the range of versions it accepts and the features it has. */
export interface VersionOffer {
  /** highest version spoken */
  version: number;
  /** lowest version accepted */
  minVersion: number;
  features: readonly string[];
}

export interface Negotiated {
  version: number;
  /** features both ends listed, in the local end's order, without duplicates */
  features: string[];
}

/**
 * Pick the highest version both ends accept and the features both have.
 * Throws SC_ERR_PROTOCOL_VERSION, naming both ranges, when the ranges do not overlap.
 */
export function negotiate(local: VersionOffer, remote: VersionOffer): Negotiated {
  const version = Math.min(local.version, remote.version);
  const floor = Math.max(local.minVersion, remote.minVersion, 1);
  if (!Number.isInteger(version) || version < floor) {
    throw new ProtocolError(
      'SC_ERR_PROTOCOL_VERSION',
      `no common protocol version: this side speaks ${range(local)}, the peer speaks ${range(remote)}; ` +
        'install the same smartcopy release on both ends',
    );
  }
  const theirs = new Set(remote.features);
  const features: string[] = [];
  for (const f of local.features) if (theirs.has(f) && !features.includes(f)) features.push(f);
  return { version, features };
}

/** True when `feature` is among the negotiated features. */
export function hasFeature(negotiated: { features: readonly string[] }, feature: string): boolean {
  return negotiated.features.includes(feature);
}

function range(o: VersionOffer): string {
  return o.minVersion === o.version ? `version ${o.version}` : `versions ${o.minVersion}..${o.version}`;
}
