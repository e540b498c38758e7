/** The SDK's version, sent in the User-Agent header. Keep equal to package.json's `version`. */
export const VERSION = "0.1.0";
