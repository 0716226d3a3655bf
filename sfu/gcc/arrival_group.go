// SPDX-FileCopyrightText: 2026 The Pion community <https://pion.ly>
// SPDX-License-Identifier: MIT

package gcc

import (
	"fmt"
	"time"
)

type arrivalGroup struct {
	departure time.Time
	arrival   time.Time
}

func newArrivalGroup(a acknowledgment) arrivalGroup {
	return arrivalGroup{
		departure: a.Departure,
		arrival:   a.Arrival,
	}
}

func (g *arrivalGroup) add(a acknowledgment) {
	g.arrival = a.Arrival
}

func (g arrivalGroup) String() string {
	s := "ARRIVALGROUP:\n"
	s += fmt.Sprintf("\tARRIVAL:\t%v\n", int64(float64(g.arrival.UnixNano())/1e+6))
	s += fmt.Sprintf("\tDEPARTURE:\t%v\n", int64(float64(g.departure.UnixNano())/1e+6))

	return s
}
