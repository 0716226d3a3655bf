// SPDX-FileCopyrightText: 2026 The Pion community <https://pion.ly>
// SPDX-License-Identifier: MIT

package gcc

import (
	"time"
)

type arrivalGroupAccumulator struct {
	interDepartureThreshold          time.Duration
	interArrivalThreshold            time.Duration
	interGroupDelayVariationTreshold time.Duration

	// What pion's run loop kept in locals: the group being accumulated.
	init  bool
	group arrivalGroup
}

func newArrivalGroupAccumulator() *arrivalGroupAccumulator {
	return &arrivalGroupAccumulator{
		interDepartureThreshold:          5 * time.Millisecond,
		interArrivalThreshold:            5 * time.Millisecond,
		interGroupDelayVariationTreshold: 0,
	}
}

// onAcks takes one feedback's acknowledgments (pion's run loop took them
// from a channel, on a goroutine of its own).
func (a *arrivalGroupAccumulator) onAcks(acks []acknowledgment, agWriter func(arrivalGroup)) {
	for _, next := range acks {
		if !a.init {
			a.group = newArrivalGroup(next)
			a.init = true

			continue
		}
		if next.Arrival.Before(a.group.arrival) {
			// ignore out of order arrivals
			continue
		}
		if next.Departure.After(a.group.departure) {
			// A sequence of packets which are sent within a burst_time interval
			// constitute a group.
			if interDepartureTimePkt(a.group, next) <= a.interDepartureThreshold {
				a.group.add(next)

				continue
			}

			// A Packet which has an inter-arrival time less than burst_time and
			// an inter-group delay variation d(i) less than 0 is considered
			// being part of the current group of packets.
			if interArrivalTimePkt(a.group, next) <= a.interArrivalThreshold &&
				interGroupDelayVariationPkt(a.group, next) < a.interGroupDelayVariationTreshold {
				a.group.add(next)

				continue
			}

			agWriter(a.group)
			a.group = newArrivalGroup(next)
		}
	}
}

func interArrivalTimePkt(group arrivalGroup, ack acknowledgment) time.Duration {
	return ack.Arrival.Sub(group.arrival)
}

func interDepartureTimePkt(group arrivalGroup, ack acknowledgment) time.Duration {
	return ack.Departure.Sub(group.departure)
}

func interGroupDelayVariationPkt(group arrivalGroup, ack acknowledgment) time.Duration {
	return ack.Arrival.Sub(group.arrival) - ack.Departure.Sub(group.departure)
}
