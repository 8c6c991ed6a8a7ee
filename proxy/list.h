/*
 * list.h — intrusive doubly linked lists.
 *
 * Objects embed a ListNode and live in at most one list per node; the list
 * that holds an object is what its state says (see client.h / server.h), so
 * moving between lists is part of a state change, never done ad hoc.
 */
#ifndef PGFUNNEL_LIST_H
#define PGFUNNEL_LIST_H

#include <stddef.h>
#include <stdbool.h>

typedef struct list_node {
    struct list_node *prev, *next;
} ListNode;

typedef struct list_head {
    ListNode head;
    int count;
} List;

#define list_entry(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void list_init(List *l)
{
    l->head.prev = l->head.next = &l->head;
    l->count = 0;
}

static inline void list_node_init(ListNode *n)
{
    n->prev = n->next = n;
}

static inline bool list_node_linked(const ListNode *n)
{
    return n->next != n;
}

static inline bool list_empty(const List *l)
{
    return l->head.next == &l->head;
}

static inline void list_append(List *l, ListNode *n)
{
    n->prev = l->head.prev;
    n->next = &l->head;
    l->head.prev->next = n;
    l->head.prev = n;
    l->count++;
}

static inline void list_prepend(List *l, ListNode *n)
{
    n->next = l->head.next;
    n->prev = &l->head;
    l->head.next->prev = n;
    l->head.next = n;
    l->count++;
}

static inline void list_remove(List *l, ListNode *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
    l->count--;
}

static inline ListNode *list_first(const List *l)
{
    return list_empty(l) ? NULL : l->head.next;
}

static inline ListNode *list_last(const List *l)
{
    return list_empty(l) ? NULL : l->head.prev;
}

/* Iterate; `tmp` allows removing `it` inside the loop. */
#define list_for_each_safe(it, tmp, l)                                                             \
    for ((it) = (l)->head.next, (tmp) = (it)->next; (it) != &(l)->head;                            \
         (it) = (tmp), (tmp) = (it)->next)

#define list_for_each(it, l) for ((it) = (l)->head.next; (it) != &(l)->head; (it) = (it)->next)

#endif
