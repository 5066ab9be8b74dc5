package rules

import (
	"encoding/binary"
	"math"
	"math/bits"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"

	"github.com/acme/analytics/pkg/hit"
)

// The cost model: a bound on what one pattern can cost on one hit, in
// units of about a nanosecond of our development machines' time (each
// constant below measured there; BenchmarkEvaluateAtLimits measures rule
// sets at MaxCost).
//
// Go's regexp runs a pattern as threads, at most one per instruction of its
// program, stepped together over the input (its backtracker, used for small
// programs, visits each instruction at each position at most once per
// search, which is the same bound). What a search costs is the
// instructions alive at each position it scans, summed, and which ones can
// be alive together depends on the pattern's shape, not only its size: a
// literal keeps one or two alive, [^~]{0,60} repeated keeps hundreds. So
// the model explores the pattern's automaton (the sets of instructions
// that can be alive together, each reached by some input) and charges
//
//   - a pattern that can scan its whole input (unanchored, or with a loop
//     such as .* or \d+): the largest such set at every byte of the input's
//     longest length (what collection keeps: 4,096 bytes of path, 1,024 of
//     user agent), not a typical length, since the input is the sender's
//     to choose;
//   - an anchored pattern without loops (^/checkout/done$): the sets along
//     its longest run, however long the input;
//   - a literal (/wp-admin, tested alone, not replaced) that Go's
//     backtracker runs: the search for it, which the backtracker makes as
//     strings.Index does (the pike VM, for larger programs or inputs,
//     searches only where no thread is alive, and a path of 0s keeps one
//     alive per 0 of 0{250}~ at every byte: the scan);
//   - a replacement, which finds every match: the scan, plus for each match
//     what its search scans past the match's end before its threads die,
//     what starting a search costs (the backtracker clears a bit per
//     instruction and position) and what the template copies. A
//     replacement whose search can scan past its match to the end of the
//     input (a(.*z)?, which looks for a z after every a) costs in the
//     order of the square of the input's length and is refused.
const (
	// inputPath bounds a page path as page patterns and replacements see
	// it (capPath).
	inputPath = MaxPathBytes
	// inputUserAgent is the longest user agent collection keeps.
	inputUserAgent = hit.MaxUserAgentBytes
	// inputChannel is what channel patterns see of a source, medium or
	// campaign (Channel).
	inputChannel = MaxChannelInputBytes

	// stepUnits is one instruction alive at one byte of input: 3 to 12 ns
	// measured, by the pattern's shape (dense bounded repetitions the
	// dearest), and up to 18 where letters match in either case (each
	// tried in its other cases too): foldStepUnits. The model takes the
	// dearest.
	stepUnits     = 12
	foldStepUnits = 18
	// callUnits is calling a search; searchUnits each further search of
	// a replacement, which also clears clearWordsPerUnit words of the
	// backtracker's bit vector a unit; copyUnitsPerByte each byte of its
	// output (3.1 to 3.4 ns measured on outputs of 16 KB to 1 MB, the
	// buffer growing as it is written: a 256-byte template for each 0
	// of a path of 4,096 took 3.6 ms).
	callUnits         = 200
	searchUnits       = 60
	clearWordsPerUnit = 27
	copyUnitsPerByte  = 3
	// refUnits is expanding one reference of a replacement's template
	// ($1, ${1}, $name) for a match: 26 to 31 ns measured, whatever the
	// group holds (its bytes are copyUnitsPerByte's). nameUnits is each
	// group name a reference by name is compared with: regexp looks the
	// name up among all of them for every match, to the end where the
	// group took no part (2.3 ns each measured). capUnits is each
	// capture position a search keeps when the template holds a $ (then
	// every group's, not only the match's): set, copied to each thread
	// it starts and to the match, 2.75 ns measured a search with 121
	// groups.
	refUnits  = 30
	nameUnits = 3
	capUnits  = 3
	// literalUnitsPerByte is searching for a literal, a byte of input.
	literalUnitsPerByte = 1

	// Go's regexp runs a program on its backtracker when it has at most
	// maxBacktrackProg instructions and its input is shorter than
	// maxBacktrackBits over that (regexp/backtrack.go).
	maxBacktrackProg = 500
	maxBacktrackBits = 256 * 1024

	// Exploring a pattern's automaton stops at these (a few milliseconds
	// of work; a rule set's together at maxRuleSetExploreWork); the
	// pattern is then charged as if every instruction were alive at
	// every position.
	maxStates             = 4000
	maxExploreWork        = 500_000
	maxRuleSetExploreWork = 5_000_000
)

// Why a replacement is refused whatever else the rule set holds: its
// searches can each scan to the end of the input, or its automaton is too
// large to tell.
const (
	quadratic  = "can keep searching to the end of the path after each match it finds (a part after the match that may fail, such as (.*z)?), so replacing every match of it costs in the order of the square of the path's length; anchor it with ^, or make what follows the match certain"
	tooComplex = "is too complex for its cost to be bounded when every match of it is replaced; anchor it with ^, or simplify it"
)

// A use of a pattern: what it is matched against, and how.
type use struct {
	input int // the longest input, in bytes
	// replace: every match is replaced by template (ReplaceAllString);
	// otherwise the pattern is tested (MatchString).
	replace  bool
	template string
	// groups is the pattern's capture groups (replace; regexp's
	// NumSubexp): what a reference by name is looked up among.
	groups int
	// joined: the pattern is matched only as one alternative of a larger
	// one (the user agents' alternation, compile), never alone.
	joined bool
}

// patternCost bounds the work of using prog (whose matches span at least
// minLen bytes) as u says. reason is set, and the cost is past any
// budget, when the work grows faster than the input (quadratic).
// Exploring its automaton goes through up to budget instructions;
// explored is how many it went through.
func patternCost(prog *syntax.Prog, minLen int, u use, budget int) (cost int, reason string, explored int) {
	n := u.input
	if prefix, complete := prog.Prefix(); complete && prefix != "" && !u.replace && !u.joined && backtracks(prog, n) {
		// Its first occurrence is the answer, which the backtracker
		// searches for, after clearing its bit vector.
		return callUnits + n*literalUnitsPerByte + len(prog.Inst)*(n+1)/32/clearWordsPerUnit, "", 0
	}
	a := explore(prog, u.replace, min(budget, maxExploreWork))
	explored = a.work
	alive := a.widest // instructions alive at one position, at most
	if a.gaveUp {
		alive = len(prog.Inst)
	}
	scan := n * alive // one search over the whole input
	switch {
	case a.gaveUp || a.loops:
	case len(a.states) == 0:
		// Nothing lives past the closure a search starts with (it
		// matches nothing, or only at the input's end: ()$), which
		// it goes through at every position unless anchored.
		if a.anchored {
			scan = alive
		}
	default:
		scan = min(scan, a.longestRun())
	}
	step := stepUnits
	if foldsCase(prog) {
		step = foldStepUnits
	}
	if !u.replace {
		return callUnits + scan*step, "", explored
	}
	words := 0 // what each search of the backtracker clears, at most
	if len(prog.Inst) <= maxBacktrackProg {
		// It runs on inputs shorter than its bound, which a path shorter
		// than n can be where n is not.
		m := min(n, maxBacktrackBits/len(prog.Inst)-1)
		words = len(prog.Inst) * (m + 1) / 32
	}
	perSearch := searchUnits + words/clearWordsPerUnit
	if strings.Contains(u.template, "$") {
		perSearch += 2 * (u.groups + 1) * capUnits
	}
	// Expanding the template's references, for every match.
	refs, named := templateRefs(u.template)
	expand := refs*refUnits + named*(u.groups+1)*nameUnits
	matches := 1 // an anchored pattern's next search fails at once
	if !a.anchored {
		if a.gaveUp {
			return math.MaxInt32, tooComplex, explored
		}
		past, ok := a.longestPastMatch()
		if !ok {
			return math.MaxInt32, quadratic, explored
		}
		matches = n + 1
		if minLen > 0 {
			matches = n/minLen + 1
		}
		scan = n*alive + matches*(past+1)*alive
	}
	// The output: the text between matches, what each $ expands to and
	// the rest of the template for every match.
	copied := n + strings.Count(u.template, "$")*n + matches*len(u.template)
	return callUnits + scan*step + (matches+1)*perSearch + matches*expand + copied*copyUnitsPerByte, "", explored
}

// backtracks reports whether Go's regexp runs prog on its backtracker for
// every input of up to n bytes.
func backtracks(prog *syntax.Prog, n int) bool {
	return len(prog.Inst) <= maxBacktrackProg && n < maxBacktrackBits/len(prog.Inst)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// foldsCase reports whether a rune instruction of prog matches letters in
// either case.
func foldsCase(prog *syntax.Prog) bool {
	for _, in := range prog.Inst {
		if (in.Op == syntax.InstRune || in.Op == syntax.InstRune1) && syntax.Flags(in.Arg)&syntax.FoldCase != 0 {
			return true
		}
	}
	return false
}

// minLength is the fewest bytes a match of re spans.
func minLength(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune) // a byte at least each, whatever its case
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1
	case syntax.OpCapture, syntax.OpPlus:
		return minLength(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min * minLength(re.Sub[0])
	case syntax.OpConcat:
		n := 0
		for _, s := range re.Sub {
			n += minLength(s)
		}
		return n
	case syntax.OpAlternate:
		n := math.MaxInt32
		for _, s := range re.Sub {
			n = min(n, minLength(s))
		}
		return n
	}
	return 0 // empty, assertions, star, quest
}

// automaton is a pattern's program explored as the pike VM of Go's regexp
// runs it: each state is the instructions alive at one position, in
// priority order.
type automaton struct {
	prog     *syntax.Prog
	anchored bool // starts only at the input's start
	// replace: searches with submatches (leftmost first), where a match
	// cuts the threads of lower priority and stops new starts, and the
	// search goes on while others live.
	replace bool
	classes []rune // one rune of each class the instructions tell apart

	ids map[string]int
	// Reused by step and intern.
	key     []byte
	roots   []uint32
	out     []int
	threads []uint32
	states  []state
	work    int // instructions the closures went through
	budget  int // work beyond which exploring gives up
	gaveUp  bool
	loops   bool // a state reaches itself: the scan can go on to the end
	widest  int

	seen     []uint32 // closure's marks, by instruction: the pass that set them
	definite []uint32 // the pass that reached it without an assertion
	pass     uint32
}

type state struct {
	threads []uint32 // rune and match instructions alive, in priority order
	size    int      // instructions the closure went through
	// matched: a match was found at or before this position (replace).
	matched bool
	// match: a thread here matches; definite: whatever the assertions
	// (^, $, \b) on the way say.
	match, definite bool
	// cut is where, among threads, the match is when it is definite: the
	// way to it that passes no assertion, which can come after threads
	// that a way through an assertion (listed first) would have cut. The
	// threads before cut outlive the match when the assertion fails.
	cut  int
	next []int
}

// explore explores prog's automaton until budget instructions have been
// gone through (then gaveUp).
func explore(prog *syntax.Prog, replace bool, budget int) *automaton {
	a := &automaton{
		budget:   budget,
		prog:     prog,
		anchored: prog.StartCond()&syntax.EmptyBeginText != 0,
		replace:  replace,
		ids:      map[string]int{},
		seen:     make([]uint32, len(prog.Inst)),
		definite: make([]uint32, len(prog.Inst)),
	}
	a.classes, a.work = runeClasses(prog, budget)
	if a.work > budget {
		a.gaveUp = true
		return a
	}
	a.intern([]uint32{uint32(prog.Start)}, false)
	for i := 0; i < len(a.states) && !a.gaveUp; i++ {
		for _, r := range a.classes {
			for _, next := range a.step(i, r) {
				if !slices.Contains(a.states[i].next, next) {
					a.states[i].next = append(a.states[i].next, next)
				}
			}
			if a.gaveUp || a.work > a.budget {
				a.gaveUp = true
				break
			}
		}
	}
	if !a.gaveUp {
		a.loops = a.cyclic(func(int) bool { return true })
	}
	return a
}

// step is where state i goes on rune r: one state, or two where a match
// depends on an assertion (one with it found, one without).
func (a *automaton) step(i int, r rune) []int {
	s := a.states[i]
	a.work += len(s.threads) // each tried on r, whether or not any matches
	roots := a.roots[:0]
	matched, maybe := s.matched, false
	for j, pc := range s.threads {
		if a.replace && s.definite && j == s.cut {
			matched = true
			break // lower priorities are cut
		}
		in := &a.prog.Inst[pc]
		if in.Op == syntax.InstMatch {
			// Through an assertion: it may or may not hold.
			maybe = maybe || a.replace
			continue
		}
		if in.MatchRune(r) {
			roots = append(roots, in.Out)
		}
	}
	if a.replace && s.definite && s.cut == len(s.threads) {
		matched = true
	}
	out := a.out[:0]
	n := len(roots)
	add := func(matched bool) {
		roots = roots[:n]
		if !matched && !a.anchored {
			roots = append(roots, uint32(a.prog.Start))
		}
		if len(roots) > 0 {
			if id := a.intern(roots, matched); id >= 0 {
				out = append(out, id)
			}
		}
	}
	add(matched)
	if maybe && !matched {
		add(true)
	}
	a.roots, a.out = roots, out
	return out
}

// intern returns the id of the state the threads at roots lead to (their
// closure), adding it when new, or -1 when exploring has gone too far.
func (a *automaton) intern(roots []uint32, matched bool) int {
	a.pass++
	s := state{matched: matched, threads: a.threads[:0]}
	for _, pc := range roots {
		a.closure(&s, pc, false)
	}
	a.threads = s.threads
	a.work += s.size
	if len(s.threads) == 0 {
		a.widest = max(a.widest, s.size) // gone through all the same
		return -1
	}
	key := a.key[:0]
	key = append(key, boolByte(matched), boolByte(s.definite))
	key = binary.LittleEndian.AppendUint32(key, uint32(s.cut))
	for _, pc := range s.threads {
		key = binary.LittleEndian.AppendUint32(key, pc)
	}
	a.key = key
	if id, ok := a.ids[string(key)]; ok {
		// The same threads reached through more instructions (a chain of
		// captures on one way to them): the search goes through as many.
		if s.size > a.states[id].size {
			a.states[id].size = s.size
			a.widest = max(a.widest, s.size)
		}
		return id
	}
	if len(a.states) >= maxStates || a.work > a.budget {
		a.gaveUp = true
		return -1
	}
	a.ids[string(key)] = len(a.states)
	s.threads = slices.Clone(s.threads)
	a.states = append(a.states, s)
	a.widest = max(a.widest, s.size)
	return len(a.states) - 1
}

// closure adds what instruction pc leads to without reading a rune, in
// priority order; cond: an assertion was passed on the way (taken as
// true, which can only add threads).
func (a *automaton) closure(s *state, pc uint32, cond bool) {
	if a.seen[pc] == a.pass && (cond || a.definite[pc] == a.pass) {
		return
	}
	first := a.seen[pc] != a.pass
	a.seen[pc] = a.pass
	if !cond {
		a.definite[pc] = a.pass
	}
	if first {
		s.size++
	}
	in := &a.prog.Inst[pc]
	switch in.Op {
	case syntax.InstAlt, syntax.InstAltMatch:
		a.closure(s, in.Out, cond)
		a.closure(s, in.Arg, cond)
	case syntax.InstCapture, syntax.InstNop:
		a.closure(s, in.Out, cond)
	case syntax.InstEmptyWidth:
		if syntax.EmptyOp(in.Arg)&syntax.EmptyEndText != 0 {
			// $ (without (?m)) holds only at the input's end, where no
			// rune follows and a search stops: what it leads to is never
			// stepped, and a match through it is the search's last.
			return
		}
		a.closure(s, in.Out, true)
	case syntax.InstMatch:
		if !cond && !s.definite {
			// Where the search finds it when the assertions on an
			// earlier way to it fail: after the threads listed since.
			s.cut = len(s.threads)
		}
		if first {
			s.threads = append(s.threads, pc)
		}
		s.match = true
		s.definite = s.definite || !cond
	case syntax.InstFail:
	default: // a rune instruction
		if first {
			s.threads = append(s.threads, pc)
		}
	}
}

// cyclic reports whether the states keep can reach one of themselves
// through states keep.
func (a *automaton) cyclic(keep func(int) bool) bool {
	color := make([]byte, len(a.states)) // 0 new, 1 on the path, 2 done
	var visit func(int) bool
	visit = func(i int) bool {
		color[i] = 1
		for _, j := range a.states[i].next {
			if !keep(j) {
				continue
			}
			if color[j] == 1 || color[j] == 0 && visit(j) {
				return true
			}
		}
		color[i] = 2
		return false
	}
	for i := range a.states {
		if keep(i) && color[i] == 0 && visit(i) {
			return true
		}
	}
	return false
}

// longestRun is the most instructions a search goes through from the
// start when no state repeats (loops false): the sizes along the longest
// path.
func (a *automaton) longestRun() int {
	return a.heaviest(func(int) bool { return true }, func(i int) int { return a.states[i].size })(0)
}

// longestPastMatch is the most positions a replacement's search scans
// past the end of the match it settles on: the longest path of states
// after a match where no thread certainly matches (a certain match moves
// the match's end). ok is false when that path can be as long as the
// input.
func (a *automaton) longestPastMatch() (past int, ok bool) {
	after := func(i int) bool { s := a.states[i]; return s.matched && !s.definite }
	if a.cyclic(after) {
		return 0, false
	}
	run := a.heaviest(after, func(int) int { return 1 })
	for i := range a.states {
		if a.states[i].matched {
			past = max(past, run(i)-1)
		}
	}
	return past, true
}

// heaviest returns the weight of the heaviest path from a state on through
// states keep (among which no cycle), each state weighing weight (at least
// 1).
func (a *automaton) heaviest(keep func(int) bool, weight func(int) int) func(int) int {
	memo := make([]int, len(a.states))
	var run func(int) int
	run = func(i int) int {
		if memo[i] == 0 {
			best := 0
			for _, j := range a.states[i].next {
				if keep(j) {
					best = max(best, run(j))
				}
			}
			memo[i] = weight(i) + best
		}
		return memo[i]
	}
	return run
}

// runeClasses returns one rune of each class of runes prog's instructions
// tell apart (all of ASCII, each range's ends and the runes beside them,
// with their case foldings), so that exploring with them alone reaches
// every state, and the work of telling them apart: each candidate rune
// gathered, and tried on each instruction. Instructions alike (\pL{990}'s)
// are tried once. Past budget, classes is nil: a class as large as \pL has
// some thousand candidates, and a pattern of many of them took seconds.
func runeClasses(prog *syntax.Prog, budget int) (classes []rune, work int) {
	var cands []rune
	for r := rune(0); r < 0x80; r++ {
		cands = append(cands, r)
	}
	cands = append(cands, 0x80, 0x7ff, 0x800, 0xfffd, 0x10000, unicode.MaxRune)
	var runeInsts []*syntax.Inst
	alike := map[string]bool{}
	var key []byte
	for i := range prog.Inst {
		in := &prog.Inst[i]
		switch in.Op {
		case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			key = append(key[:0], byte(in.Op), boolByte(syntax.Flags(in.Arg)&syntax.FoldCase != 0))
			for _, r := range in.Rune {
				key = binary.LittleEndian.AppendUint32(key, uint32(r))
			}
			if alike[string(key)] {
				continue
			}
			alike[string(key)] = true
			runeInsts = append(runeInsts, in)
			for _, r := range in.Rune {
				for _, c := range []rune{r - 1, r, r + 1} {
					if c < 0 || c > unicode.MaxRune {
						continue
					}
					cands = append(cands, c)
					for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
						cands = append(cands, f)
					}
				}
			}
			if len(cands) > budget {
				return nil, len(cands)
			}
		}
	}
	work = len(cands)
	slices.Sort(cands)
	cands = slices.Compact(cands)
	tries := 0 // trying a rune on an instruction searches its ranges
	for _, in := range runeInsts {
		tries += 1 + bits.Len(uint(len(in.Rune)))
	}
	if work += len(cands) * tries; work > budget {
		return nil, work
	}
	seen := map[string]bool{}
	sig := make([]byte, len(runeInsts))
	for _, c := range cands {
		for i, in := range runeInsts {
			sig[i] = 0
			if in.MatchRune(c) {
				sig[i] = 1
			}
		}
		if !seen[string(sig)] {
			seen[string(sig)] = true
			classes = append(classes, c)
		}
	}
	return classes, work
}

// MatchCost is what testing a value of up to input bytes against the
// regular expression expr (Perl syntax, as regexp.Compile takes it) can
// cost, in the units of MaxCost: report-svc's filters bound theirs with
// it.
func MatchCost(expr string, input int) (int, error) {
	prog, minLen, err := program(expr)
	if err != nil {
		return 0, err
	}
	cost, _, _ := patternCost(prog, minLen, use{input: input}, maxExploreWork)
	return cost, nil
}
