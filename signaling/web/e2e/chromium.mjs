// The Chromium command line every browser test starts from: headless in a
// container (no sandbox, no GPU), no QUIC and no background traffic, so the
// only network use is the test's own.
//
// BASE_ARGS alone for a page that captures nothing (replay); FAKE_MEDIA_ARGS
// add a fake camera and microphone granted without a prompt.
export const BASE_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
export const FAKE_MEDIA_ARGS = [...BASE_ARGS, '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];

// Every RTCPeerConnection the page makes, kept in window.__pcs for getStats
// (page.addInitScript(capturePCs)).
export const capturePCs = () => {
  const Orig = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (...a) { const pc = new Orig(...a); window.__pcs.push(pc); return pc; };
  window.RTCPeerConnection.prototype = Orig.prototype;
};
