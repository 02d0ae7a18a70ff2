package edge

// WaitingParties reports how many parties the shared flights running now
// have in all: for the external tests, to know that a request joined a
// fill before they go on.
func (h *Handler) WaitingParties() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, f := range h.flights {
		f.mu.Lock()
		n += f.parties
		f.mu.Unlock()
	}
	return n
}
