package muster

// list is an intrusive doubly linked list, oldest first: the engine keeps
// its open batches in one (in the order of their deadlines), then the same
// batches admitted and not yet taken by a goroutine in another, and its idle
// keys in a third (least recently used first). Its nodes embed a link, so
// that joining and leaving it allocate nothing.
type list[E any, P linked[E]] struct {
	head, tail P
}

// link is a node's place in a list.
type link[E any] struct {
	prev, next *E
}

// linked is a pointer to a node: it gives the node's link.
type linked[E any] interface {
	*E
	links() *link[E]
}

// pushBack appends n, the newest node.
func (l *list[E, P]) pushBack(n P) {
	k := n.links()
	k.prev, k.next = l.tail, nil
	if l.tail != nil {
		l.tail.links().next = n
	} else {
		l.head = n
	}
	l.tail = n
}

// remove takes n, which is in l, out of it.
func (l *list[E, P]) remove(n P) {
	k := n.links()
	if k.prev != nil {
		P(k.prev).links().next = k.next
	} else {
		l.head = k.next
	}
	if k.next != nil {
		P(k.next).links().prev = k.prev
	} else {
		l.tail = k.prev
	}
	k.prev, k.next = nil, nil
}

// next returns the node after n, or nil.
func (l *list[E, P]) next(n P) P { return n.links().next }
