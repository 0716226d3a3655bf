// SPDX-FileCopyrightText: 2026 The Pion community <https://pion.ly>
// SPDX-License-Identifier: MIT

package gcc

import (
	"sync"
	"time"

	"github.com/pion/logging"
)

// DelayStats contains some internal statistics of the delay based congestion
// controller.
type DelayStats struct {
	Measurement      time.Duration
	Estimate         time.Duration
	Threshold        time.Duration
	LastReceiveDelta time.Duration

	Usage         usage
	State         state
	TargetBitrate int
}

type now func() time.Time

// delayController is pion's, run on the caller's goroutine (a goroutine
// reading the subscriber's RTCP; pion binds one per sender, hence the
// mutex): pion's handed each feedback's acknowledgments to two goroutines
// of its own (per connection) through unbuffered channels, two wake-ups
// per feedback.
type delayController struct {
	mu             sync.Mutex // one feedback at a time
	accumulator    *arrivalGroupAccumulator
	onArrivalGroup func(arrivalGroup)
	rateCalculator *rateCalculator

	*rateController

	onUpdateCallback func(DelayStats)

	log logging.LeveledLogger
}

type delayControllerConfig struct {
	nowFn          now
	initialBitrate int
	minBitrate     int
	maxBitrate     int
}

func newDelayController(delayConfig delayControllerConfig, loggerFactory logging.LoggerFactory) *delayController {
	delayController := &delayController{
		log: loggerFactory.NewLogger("gcc_delay_controller"),
	}

	rateController := newRateController(
		delayConfig.nowFn, delayConfig.initialBitrate, delayConfig.minBitrate, delayConfig.maxBitrate,
		func(ds DelayStats) {
			delayController.log.Infof("delaystats: %v", ds)
			if delayController.onUpdateCallback != nil {
				delayController.onUpdateCallback(ds)
			}
		},
	)
	delayController.rateController = rateController
	overuseDetector := newOveruseDetector(newAdaptiveThreshold(), 10*time.Millisecond, rateController.onDelayStats)
	slopeEstimator := newSlopeEstimator(newKalman(), overuseDetector.onDelayStats)
	delayController.accumulator = newArrivalGroupAccumulator()
	delayController.onArrivalGroup = slopeEstimator.onArrivalGroup
	delayController.rateCalculator = newRateCalculator(500 * time.Millisecond)

	return delayController
}

func (d *delayController) onUpdate(f func(DelayStats)) {
	d.onUpdateCallback = f
}

func (d *delayController) updateDelayEstimate(acks []acknowledgment) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// The received rate first, so that the rate controller answers this
	// feedback's delay with this feedback's rate (in pion the rate
	// calculator's goroutine, with less to do, usually got there first too;
	// libwebrtc orders them so).
	d.rateCalculator.onAcks(acks, d.rateController.onReceivedRate)
	d.accumulator.onAcks(acks, d.onArrivalGroup)
}
