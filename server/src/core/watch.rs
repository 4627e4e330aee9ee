//! Watch registrations of the sessions connected to this node.
