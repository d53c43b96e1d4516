# Published: Live API session management guide, "Receiving a message before the session
# disconnects" and "Receiving a message when the generation is complete" (Python): the two
# receive-loop fragments, set in the guide's text example.
import asyncio
from google import genai

client = genai.Client(api_key="GEMINI_API_KEY")
model = "gemini-2.0-flash-live-001"

config = {"response_modalities": ["TEXT"]}

async def main():
    async with client.aio.live.connect(model=model, config=config) as session:
        message = "Hello, how are you?"
        await session.send_client_content(
            turns={"role": "user", "parts": [{"text": message}]}, turn_complete=True
        )

        async for response in session.receive():
            if response.go_away is not None:
                # The connection will soon be terminated
                print(response.go_away.time_left)

            if response.server_content.generation_complete is True:
                # The generation is complete
                print("generation complete")

if __name__ == "__main__":
    asyncio.run(main())
