package recorder

// previous asks Options.Chain for the consultation's previous recording.
func (r *Recorder) previous(cid, rid string) string {
	if r.opts.Chain == nil {
		return ""
	}
	return r.opts.Chain(cid, rid)
}

// SetChain sets Options.Chain; call it before the first recording opens.
func (r *Recorder) SetChain(f func(cid, rid string) string) { r.opts.Chain = f }
