package bench

// SetRejoinHook sets the function a rejoining client calls between its
// join's acknowledgement and the join being counted, and returns a function
// that takes it away. Tests that set it must not run in parallel.
func SetRejoinHook(f func(i int)) (restore func()) {
	testHookRejoined = f
	return func() { testHookRejoined = nil }
}
