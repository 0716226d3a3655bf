package main

import (
	"log/slog"
	"path/filepath"

	"github.com/medcall/medcall/recorder"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling/webhook"
)

// openWebhooks returns the webhook sender configured by --webhook-url and
// --webhook-secret, or nil when no URL is set. Its queue lives under
// --data/webhooks.
func openWebhooks(cfg *serveConfig, log *slog.Logger) (*webhook.Sender, error) {
	if cfg.webhookURL == "" {
		return nil, nil
	}
	return webhook.New(webhook.Options{
		URL: cfg.webhookURL, Secret: cfg.webhookSecret,
		Dir: filepath.Join(cfg.data, "webhooks"), Logger: log,
	})
}

// consultationEvents wraps the SFU's tap factory so that each consultation
// session sends consultation.started when it opens (first join) and
// consultation.ended when it closes (last leave, or the server stopping).
func consultationEvents(taps sfu.TapFactory, hooks *webhook.Sender, log *slog.Logger) sfu.TapFactory {
	return func(b sfu.Binding) sfu.Tap {
		ev := webhook.Consultation{Consultation: b.Consultation, Patient: b.Patient, Session: webhook.NewSession(), Recorded: b.Record}
		if err := hooks.Started(ev); err != nil {
			log.Error("webhook consultation.started not queued", "consultation", b.Consultation, "err", err)
		}
		return &eventTap{inner: taps(b), ev: ev, hooks: hooks, log: log}
	}
}

// eventTap passes everything to the recorder's tap (if any) and reports the end.
type eventTap struct {
	inner sfu.Tap
	ev    webhook.Consultation
	hooks *webhook.Sender
	log   *slog.Logger
}

func (t *eventTap) OnTrack(info sfu.TrackInfo) sfu.TrackSink {
	if t.inner == nil {
		return nil
	}
	return t.inner.OnTrack(info)
}

func (t *eventTap) OnEvent(ev sfu.Event) {
	if t.inner != nil {
		t.inner.OnEvent(ev)
	}
}

func (t *eventTap) Close() {
	if t.inner != nil {
		t.inner.Close()
	}
	if err := t.hooks.Ended(t.ev); err != nil {
		t.log.Error("webhook consultation.ended not queued", "consultation", t.ev.Consultation, "err", err)
	}
}

// recordingEvents adds recording.stored and recording.failed to the
// uploader's observer.
func recordingEvents(obs recorder.UploadObserver, hooks *webhook.Sender, log *slog.Logger) recorder.UploadObserver {
	obs.Stored = func(rec *recorder.Recording, o recorder.StoredObjects) {
		err := hooks.Stored(webhook.Recording{
			Recording: rec.ID, Consultation: rec.Consultation, Patient: rec.Patient,
			ObjectKey: o.WebMKey, ManifestKey: o.ManifestKey, ObjectSHA256: o.WebMSHA256, ManifestSHA256: o.ManifestSHA256,
			SizeBytes: o.Size, Recovered: rec.Recovered,
		})
		if err != nil {
			log.Error("webhook recording.stored not queued", "recording", rec.ID, "err", err)
		}
	}
	obs.RecordingFailed = func(rec *recorder.Recording) {
		err := hooks.RecordingFailed(webhook.Recording{Recording: rec.ID, Consultation: rec.Consultation, Patient: rec.Patient, Recovered: rec.Recovered})
		if err != nil {
			log.Error("webhook recording.failed not queued", "recording", rec.ID, "err", err)
		}
	}
	return obs
}

// watchWebhooks adds the webhook series; they stay 0 without --webhook-url.
func (m *metrics) watchWebhooks(h *webhook.Sender) {
	read := func(f func(*webhook.Sender) float64) func() float64 {
		return func() float64 {
			if h == nil {
				return 0
			}
			return f(h)
		}
	}
	gaugeFunc(m.reg, "webhooks_pending", "Webhook events queued and not yet accepted by the receiver.", read(func(h *webhook.Sender) float64 { return float64(h.Pending()) }))
	counterFunc(m.reg, "webhooks_delivered_total", "Webhook events the receiver accepted.", nil, read(func(h *webhook.Sender) float64 { return float64(h.Delivered()) }))
	counterFunc(m.reg, "webhook_failures_total", "Failed webhook delivery attempts (each is retried with backoff).", nil, read(func(h *webhook.Sender) float64 { return float64(h.Failed()) }))
}
