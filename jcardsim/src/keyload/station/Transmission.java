package keyload.station;

import java.util.function.UnaryOperator;

/** How a card's answers reach the reader: whole at once (T=1), or the way a T=0 card's runtime sends them. */
interface Transmission {

    /** T=1: the command goes to the card as it came, the whole answer comes back at once. */
    Transmission DIRECT = new Transmission() {
        @Override
        public byte[] exchange(byte[] command, UnaryOperator<byte[]> card) {
            return card.apply(command);
        }

        @Override
        public void powerLoss() {
            // nothing is held between commands
        }
    };

    /**
     * One command from the reader and what the card sends back; {@code card} runs a command APDU on the
     * card's applets and returns their response APDU (data and status word).
     */
    byte[] exchange(byte[] command, UnaryOperator<byte[]> card);

    /** Forgets whatever is held between commands, as a card losing power does. */
    void powerLoss();
}
