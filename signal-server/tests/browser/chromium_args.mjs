// Chromium switches shared by the headless-browser drivers (peerjs_pair.mjs, demo_pair.mjs):
// WebRTC between pages on loopback, with nothing fetched from outside.

// Copied from playwright-core 1.64.1 (chromiumSwitches.ts disabledFeatures); harmless if stale.
const PLAYWRIGHT_DISABLED_FEATURES = [
  "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "DialMediaRouteProvider",
  "GlobalMediaControls", "HttpsUpgrades", "LensOverlay", "MediaRouter", "PaintHolding",
  "ThirdPartyStoragePartitioning", "BlockOriginHeaderModificationOnRedirect",
  "AvoidCorsURLLoaderRestartOnRedirect", "Translate", "AutoDeElevate", "OptimizationHints",
  "NetworkTimeServiceQuerying", "AimEnabled",
];

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // WebRTC over loopback (each driver also grants its pages camera+microphone, without which
  // Chromium offers only the default-route address as a host candidate):
  //  - without this Chromium replaces host IPs with random <uuid>.local mDNS names
  //    (announced/queried by multicast, unresolvable here). Chromium keeps only the
  //    LAST --disable-features switch, and Playwright puts its own list first, so
  //    Playwright's list is repeated here (it suppresses startup requests to Google).
  "--disable-features=" + [...PLAYWRIGHT_DISABLED_FEATURES, "WebRtcHideLocalIpsWithMdns"].join(","),
  //  - without this Chromium skips the loopback interface when gathering host candidates
  "--allow-loopback-in-peer-connection",
];
